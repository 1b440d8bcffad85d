// Package archtest checks the import graph against the package table in the
// design: dependencies point one way, only local imports ristretto, only
// metrics imports prometheus. Test files are not part of the graph, so a
// benchmark may import a baseline it is compared with.
package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/tiercache/tiercache"

// forbidden lists, per package, import path prefixes it must not import.
// Indirect dependencies are allowed: tiered reaches ristretto through local.
var forbidden = map[string][]string{
	mod + "/tiered":       {"github.com/dgraph-io/ristretto", "github.com/prometheus/", mod + "/metrics"},
	mod + "/local":        {"github.com/redis/go-redis", mod + "/remote", mod + "/invalidation", mod + "/tiered", mod + "/metrics"},
	mod + "/remote":       {"github.com/dgraph-io/ristretto", mod + "/local", mod + "/invalidation", mod + "/tiered", mod + "/metrics"},
	mod + "/invalidation": {"github.com/dgraph-io/ristretto", mod + "/local", mod + "/remote", mod + "/tiered", mod + "/metrics"},
	mod + "/metrics":      {"github.com/dgraph-io/ristretto", mod + "/local", mod + "/remote"},
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func TestImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", mod+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := map[string]bool{}
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		seen[p.ImportPath] = true
		for _, d := range p.Imports {
			for _, bad := range forbidden[p.ImportPath] {
				if strings.HasPrefix(d, bad) {
					t.Errorf("%s imports %s; the design forbids %s", p.ImportPath, d, bad)
				}
			}
			// Nothing but examples imports metrics: it observes from outside.
			if d == mod+"/metrics" && !strings.HasPrefix(p.ImportPath, mod+"/examples/") {
				t.Errorf("%s imports metrics; nothing in the library may", p.ImportPath)
			}
			// internal/... must not import any top-level package of ours.
			if strings.HasPrefix(p.ImportPath, mod+"/internal/") && strings.HasPrefix(d, mod+"/") &&
				!strings.HasPrefix(d, mod+"/internal/") {
				t.Errorf("%s imports %s; internal packages import no top-level package", p.ImportPath, d)
			}
		}
	}
	for p := range forbidden {
		if !seen[p] && p != mod+"/metrics" {
			t.Errorf("package %s not found by go list", p)
		}
	}
}

// TestCoreHasNoOpenTelemetry: the OpenTelemetry bridge is a module of its
// own (tierotel), so that users of the library do not download it.
func TestCoreHasNoOpenTelemetry(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "all").Output()
	if err != nil {
		t.Fatalf("go list -m all: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "go.opentelemetry.io/") {
			t.Errorf("the tiercache module depends on %s; OpenTelemetry belongs in tierotel", line)
		}
	}
}
