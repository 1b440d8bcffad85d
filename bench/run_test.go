package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunSmoke runs every scenario for every system briefly against a
// redis-server child, then checks the output's shape, never any speed:
// results.json parses and holds a row (figures or a reason) for every
// system in every scenario, each scenario's SVG is well-formed XML, and
// the markdown has every table.
func TestRunSmoke(t *testing.T) {
	needRedisServer(t)
	if testing.Short() {
		t.Skip("smoke run skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := Smoke()
	c.Out = t.TempDir()
	c.Saturate = true
	var out strings.Builder
	if _, err := Run(ctx, c, &out); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	md := out.String()
	for _, want := range []string{"GOMAXPROCS=", "CPU ", "Redis 7", "(redis-server)", "### 1. Hot path", "### 2. Mixed", "### 2b. Mixed", "### 3. Cold-key", "### 4. Batch", "### 5. Redis blackholed", "### 6. Hot keys"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}

	b, err := os.ReadFile(filepath.Join(c.Out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("results.json does not parse: %v", err)
	}
	if res.Env.Go == "" || res.Env.GOMAXPROCS == 0 || res.Env.Redis == "" || res.Params["nodes"] == nil {
		t.Errorf("results.json lacks the run's environment or parameters: %+v %v", res.Env, res.Params)
	}
	want := []string{"hot", "mixed", "mixed-saturated", "stampede", "batch", "outage", "refresh", "prod"}
	var got []string
	for _, s := range res.Scenarios {
		got = append(got, s.Name)
		checkCells(t, s)
		checkSVG(t, filepath.Join(c.Out, s.Name+".svg"))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("scenarios = %v, want %v", got, want)
	}
}

// checkCells fails t unless every system has a row in s, and every row has
// either every column's figure or a reason it has none.
func checkCells(t *testing.T, s *Section) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range s.Rows {
		seen[r.System] = true
		if r.Skipped != "" {
			continue
		}
		for _, col := range s.Columns {
			if _, ok := r.Values[col.Key]; !ok && !optional(s.Name, r.System, col.Key) {
				t.Errorf("%s: %s %q has no %q and no reason", s.Name, r.System, r.Case, col.Key)
			}
		}
	}
	for _, sys := range systems() {
		if !seen[sys.name] {
			t.Errorf("%s: no row for %s", s.Name, sys.name)
		}
	}
	// Only the tracking systems may be skipped on a real redis-server.
	for _, r := range s.Rows {
		if r.Skipped != "" && !strings.HasPrefix(r.Skipped, "n/a") && !strings.HasPrefix(r.Skipped, "not run") {
			t.Errorf("%s: %s skipped on redis-server: %s", s.Name, r.System, r.Skipped)
		}
	}
}

// optional lists the figures a system has no way to give: a tier it lacks,
// a window it never reached in a smoke run's short phases.
func optional(scenario, sys, key string) bool {
	switch {
	case key == "local_after_fill" && sys == sysRawRedis:
		return true
	case scenario == "outage" && (key == "during_max" || key == "local_again"):
		return true
	case strings.HasPrefix(scenario, "mixed") && key == "cmds_op":
		return false
	}
	return false
}

// checkSVG fails t unless path is a well-formed SVG document with a chart.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	var root string
	rects := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("%s is not well-formed: %v", filepath.Base(path), err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "rect" {
				rects++
			}
		}
	}
	if root != "svg" || rects < 2 {
		t.Errorf("%s: root <%s>, %d rects; want an <svg> with bars", filepath.Base(path), root, rects)
	}
}

// needRedisServer skips a test that needs redis-server when it is missing,
// or fails it when TIERCACHE_REQUIRE_REDIS=1, as CI sets.
func needRedisServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("TIERCACHE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server not on PATH and TIERCACHE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-server not on PATH; install it (apt-get install redis-server) to run this test")
	}
}

// TestMiniredisFallback runs one scenario with no redis-server on PATH: the
// run falls back to miniredis, warns, and gives the tracking systems a
// reason instead of figures.
func TestMiniredisFallback(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	c := Smoke()
	c.Out = t.TempDir()
	c.Scenarios = []string{"stampede"}
	var warned []string
	c.Progress = func(l string) {
		if strings.Contains(l, "WARNING") {
			warned = append(warned, l)
		}
	}
	var out strings.Builder
	res, err := Run(context.Background(), c, &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "miniredis") {
		t.Errorf("warnings = %q, want one about miniredis", warned)
	}
	if res.Env.RedisKind != "miniredis" {
		t.Errorf("RedisKind = %q", res.Env.RedisKind)
	}
	for _, r := range res.Scenarios[0].Rows {
		tracking := r.System == "rueidis" || r.System == "go-redis CSC"
		if tracking != strings.Contains(r.Skipped, "miniredis") {
			t.Errorf("%s: skipped = %q", r.System, r.Skipped)
		}
	}
}

func TestConfigCheckReportsAll(t *testing.T) {
	c := Config{Scenarios: []string{"hot", "bogus"}, Nodes: -1, ZipfS: 0.5, HotKeys: []int{3}}.withDefaults()
	err := c.check()
	if err == nil {
		t.Fatal("check passed a bad config")
	}
	for _, want := range []string{`unknown scenario "bogus"`, "nodes is -1", "zipf exponent is 0.5", "hot key count 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestFreshness(t *testing.T) {
	db := newTruth(1)
	db.ack(0, 1, 100)
	db.ack(0, 3, 200) // version 3's write returned before version 2's
	db.ack(0, 2, 250)
	for _, c := range []struct {
		at   int64
		want uint64
	}{{50, 0}, {100, 0}, {101, 1}, {201, 3}, {300, 3}} {
		if got := db.newest(0, c.at); got != c.want {
			t.Errorf("newest before %d = %d, want %d", c.at, got, c.want)
		}
	}
	if v, ok := version(db.value(0, 42)); !ok || v != 42 {
		t.Errorf("version(value(42)) = %d, %v", v, ok)
	}
	if _, ok := version("garbage"); ok {
		t.Error("version parsed garbage")
	}
	if got := nines(0, 1000); got != 3 {
		t.Errorf("nines(0, 1000) = %v, want 3 (the floor)", got)
	}
	if got := nines(1, 1000); got != 3 {
		t.Errorf("nines(1, 1000) = %v, want 3", got)
	}
}

func TestPercentile(t *testing.T) {
	s := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {99, 10}, {10, 1}, {100, 10}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}
