package local

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fillExpiring fills key with v for ttl, due for a refresh after
// refreshAfter, and waits for ristretto to apply it.
func fillExpiring(t *testing.T, c *Cache[string], key, v string, ttl, refreshAfter time.Duration) {
	t.Helper()
	if !c.FillWith(key, v, false, 1, ttl, refreshAfter, 0, c.Stamp(key)) {
		t.Fatalf("FillWith(%q) = false", key)
	}
	c.Wait()
}

// TestReviewGetExpiredOnlyForAgedEntries: GetExpired serves an entry only
// after its expiry, within grace, and never once an invalidation of the
// key, an InvalidateAll or a Suspend happened since its fill.
func TestReviewGetExpiredOnlyForAgedEntries(t *testing.T) {
	c := newTestCache[string](t, Options{MaxCost: 1000, KeepExpired: time.Minute})
	for _, k := range []string{"a", "b", "c", "d"} {
		fillExpiring(t, c, k, k, time.Second, -1)
	}
	if _, _, ok := c.GetExpired("a", time.Minute); ok {
		t.Error("GetExpired of a live entry hit")
	}
	c.now.Add(int64(2 * time.Second))
	if _, _, ok := c.Get("a"); ok {
		t.Fatal("Get of an expired entry hit")
	}
	if p, _, ok := c.GetExpired("a", time.Minute); !ok || *p != "a" {
		t.Fatalf("GetExpired(a) after expiry = %v, %v; want a", p, ok)
	}
	if _, _, ok := c.GetExpired("a", 500*time.Millisecond); ok {
		t.Error("GetExpired(a) past its grace hit")
	}
	c.Invalidate("b")
	if _, _, ok := c.GetExpired("b", time.Minute); ok {
		t.Error("GetExpired(b) after Invalidate(b) hit")
	}
	c.Suspend()
	if _, _, ok := c.GetExpired("c", time.Minute); ok {
		t.Error("GetExpired(c) after Suspend hit")
	}
	c.InvalidateAll()
	if _, _, ok := c.GetExpired("d", time.Minute); ok {
		t.Error("GetExpired(d) after InvalidateAll hit")
	}
	c.Close()
	if _, _, ok := c.GetExpired("a", time.Minute); ok {
		t.Error("GetExpired after Close hit")
	}
}

// TestReviewExpiredEntryKeptForGrace: a Get that finds an expired entry
// does not free it while it is within KeepExpired, so GetExpired still
// finds it after the janitor ran.
func TestReviewExpiredEntryKeptForGrace(t *testing.T) {
	c := newTestCache[string](t, Options{MaxCost: 1000, KeepExpired: time.Minute})
	fillExpiring(t, c, "a", "A", time.Second, -1)
	c.now.Add(int64(2 * time.Second))
	for range 3 {
		c.Get("a")
	}
	c.settle()
	if p, _, ok := c.GetExpired("a", time.Minute); !ok || *p != "A" {
		t.Fatalf("GetExpired(a) = %v, %v after Gets of the expired entry; want A", p, ok)
	}
}

// TestReviewClaimRefreshOnce: of many concurrent claims of a due entry
// exactly one wins; the entry is no longer reported due; a new fill is
// due again and claimable once; invalidated, expired or not-yet-due
// entries cannot be claimed.
func TestReviewClaimRefreshOnce(t *testing.T) {
	c := newTestCache[string](t, Options{MaxCost: 1000})
	fillExpiring(t, c, "k", "v", time.Hour, time.Second)
	if _, _, due, ok := c.GetRef("k"); !ok || due {
		t.Fatalf("GetRef before the refresh time: due %v, ok %v; want not due", due, ok)
	}
	if claimed(c, "k") {
		t.Error("claimed an entry that is not due")
	}
	c.now.Add(int64(2 * time.Second))
	if _, _, due, ok := c.GetRef("k"); !ok || !due {
		t.Fatalf("GetRef after the refresh time: due %v, ok %v; want due", due, ok)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if claimed(c, "k") {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d claims won, want 1", n)
	}
	if _, _, due, _ := c.GetRef("k"); due {
		t.Error("a claimed entry is still reported due")
	}
	fillExpiring(t, c, "k", "v2", time.Hour, 0)
	if _, _, due, ok := c.GetRef("k"); !ok || !due {
		t.Fatalf("a new fill due at once: due %v, ok %v", due, ok)
	}
	if !claimed(c, "k") || claimed(c, "k") {
		t.Error("a new fill is not claimable exactly once")
	}
	fillExpiring(t, c, "i", "v", time.Hour, 0)
	c.Invalidate("i")
	if claimed(c, "i") {
		t.Error("claimed an invalidated entry")
	}
	fillExpiring(t, c, "e", "v", time.Second, 0)
	c.now.Add(int64(2 * time.Second))
	if claimed(c, "e") {
		t.Error("claimed an expired entry")
	}
}

// TestReviewFillWithHugeTimes: the largest TTL and refresh time neither
// overflow into the past nor make the entry due.
func TestReviewFillWithHugeTimes(t *testing.T) {
	c := newTestCache[string](t, Options{MaxCost: 1000})
	c.now.Store(int64(time.Hour))
	fillExpiring(t, c, "k", "v", time.Duration(1<<63-1), time.Duration(1<<63-1))
	p, _, due, ok := c.GetRef("k")
	if !ok || *p != "v" || due {
		t.Fatalf("GetRef = %v, due %v, ok %v; want v, not due", p, due, ok)
	}
}

// claimed reports whether ClaimRefresh of key won.
func claimed[V any](c *Cache[V], key string) bool {
	_, ok := c.ClaimRefresh(key)
	return ok
}
