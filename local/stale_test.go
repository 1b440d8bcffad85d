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
