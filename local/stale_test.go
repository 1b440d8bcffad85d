package local

import (
	"testing"
	"time"
)

// TestSuspendAndGetStale: after Suspend, Get misses but GetStale still
// serves an entry within its age; an invalidation of the key, an
// InvalidateAll, or an age past maxAge end that.
func TestSuspendAndGetStale(t *testing.T) {
	c := newTestCache[string](t, Options{MaxCost: 1000})
	mustFill(t, c, "a", "A")
	mustFill(t, c, "b", "B")
	mustFill(t, c, "c", "C")
	c.Suspend()
	if _, _, ok := c.Get("a"); ok {
		t.Error("Get(a) after Suspend hit; want a miss")
	}
	if p, _, ok := c.GetStale("a", time.Minute); !ok || *p != "A" {
		t.Errorf("GetStale(a) after Suspend = %v, %v; want A", p, ok)
	}
	c.Invalidate("b")
	if _, _, ok := c.GetStale("b", time.Minute); ok {
		t.Error("GetStale(b) after Invalidate(b) hit; want a miss")
	}
	c.now.Add(int64(2 * time.Second))
	if _, _, ok := c.GetStale("a", time.Second); ok {
		t.Error("GetStale(a, 1s) two seconds after the fill hit; want a miss")
	}
	c.InvalidateAll()
	if _, _, ok := c.GetStale("c", time.Minute); ok {
		t.Error("GetStale(c) after InvalidateAll hit; want a miss")
	}
}

// TestGetStaleNotCounted: GetStale, hit or miss, leaves Hits and Misses
// alone. tiered calls it only for a read that skipped L1 (and counted
// that), so a count here would count the read twice; it used the Get
// gate, whose uncounted exits are hits, so every stale miss read as a
// hit.
func TestGetStaleNotCounted(t *testing.T) {
	tests := []struct {
		name string
		give string
		want bool
	}{
		{"stale hit", "a", true},
		{"miss", "absent", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache[string](t, Options{MaxCost: 1000})
			mustFill(t, c, "a", "A")
			c.Suspend()
			before := c.Stats()
			if _, _, ok := c.GetStale(tt.give, time.Minute); ok != tt.want {
				t.Fatalf("GetStale(%q) ok = %v, want %v", tt.give, ok, tt.want)
			}
			if got := c.Stats(); got.Hits != before.Hits || got.Misses != before.Misses {
				t.Errorf("GetStale(%q) moved Hits, Misses from %d, %d to %d, %d; want unchanged",
					tt.give, before.Hits, before.Misses, got.Hits, got.Misses)
			}
		})
	}
}
