package main

import (
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the demo on its embedded Redis and checks what each line it
// prints says: a line that lies fails the test.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run("", &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	tests := []struct {
		prefix, want string // a line starting with prefix must match want
	}{
		{"a: GetOrLoad 42 (cold", `Widget +995 .*db queries so far: 1\)$`},
		{"b: GetOrLoad 42 (from Redis", `Widget +995 .*db queries so far: 1\)$`},
		{"a: GetOrLoad 42 (from memory", `Widget +995 .*db queries so far: 1\)$`},
		{"b: GetOrLoad 42 (from memory", `Widget +995 .*db queries so far: 1\)$`},
		{"a: Set 42 to 1095", `one round trip\)$`},
		{"b: sees 1095 ", `after a's Set returned$`},
		{"a: Set 42 to 1195, confirmed", `once every replica had dropped 1095\)$`},
		{"a: GetOrLoad 7", `not found .*db queries so far: 2\)$`},
		{"b: GetOrLoad 7", `not found .*db queries so far: 2\)$`},
	}
	for _, tt := range tests {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, tt.prefix) {
				found = true
				if !regexp.MustCompile(tt.want).MatchString(l) {
					t.Errorf("line %q does not match %q", l, tt.want)
				}
			}
		}
		if !found {
			t.Errorf("no line starts with %q; output:\n%s", tt.prefix, out.String())
		}
	}
	// "b: GetOrLoad 42 at once" appears twice: after the plain Set it may
	// show either price (and says so when it is the old one); after the
	// confirmed Set it must show the new one.
	var atOnce []string
	for i, l := range lines {
		if !strings.HasPrefix(l, "b: GetOrLoad 42 at once") {
			continue
		}
		atOnce = append(atOnce, l)
		if len(atOnce) == 1 && !strings.Contains(l, " 1095 ") {
			if next := lines[i+1]; !strings.Contains(next, "still on its way") {
				t.Errorf("line %q shows the old price without saying why; next line %q", l, next)
			}
		}
	}
	if len(atOnce) != 2 || !regexp.MustCompile(`Widget +1195 `).MatchString(atOnce[1]) {
		t.Errorf("reads right after the Sets: %q; want two, the second (after the confirmed Set) with 1195", atOnce)
	}
}
