package local

import (
	"hash/maphash"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// newTestCache returns a cache whose coarse clock moves only when the test
// stores into c.now, closed when the test ends.
func newTestCache[V any](t *testing.T, o Options) *Cache[V] {
	t.Helper()
	c, err := newCache[V](o, false)
	if err != nil {
		t.Fatalf("newCache(%+v): %v", o, err)
	}
	t.Cleanup(c.Close)
	return c
}

// mustFill fills key with v under a fresh stamp and waits for ristretto to
// apply the set. In a fresh cache with room to spare this makes a later Get
// hit deterministically: ristretto admits every set while the new cost fits
// (policy.Add), and its set buffer cannot be full.
func mustFill(t *testing.T, c *Cache[string], key, v string) {
	t.Helper()
	if !c.Fill(key, v, 1, time.Hour, c.Stamp(key)) {
		t.Fatalf("Fill(%q) = false, want true", key)
	}
	c.Wait()
}

// settle waits until the janitor has run every Clear requested and every
// Del queued before the call.
func (c *Cache[V]) settle() {
	for {
		// A clear requested before this check is taken off clearReq, and
		// run, before the janitor reaches the flush below.
		idle := len(c.clearReq) == 0
		done := make(chan struct{})
		c.dels <- del{done: done}
		<-done
		if idle {
			return
		}
	}
}

type getResult struct {
	v        string
	negative bool
	ok       bool
}

func TestGet(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, c *Cache[string])
		give  string
		want  getResult
	}{
		{
			name:  "empty",
			setup: func(t *testing.T, c *Cache[string]) {},
			give:  "a",
			want:  getResult{},
		},
		{
			name:  "filled",
			setup: func(t *testing.T, c *Cache[string]) { mustFill(t, c, "a", "1") },
			give:  "a",
			want:  getResult{v: "1", ok: true},
		},
		{
			name:  "other key filled",
			setup: func(t *testing.T, c *Cache[string]) { mustFill(t, c, "b", "1") },
			give:  "a",
			want:  getResult{},
		},
		{
			name: "negative",
			setup: func(t *testing.T, c *Cache[string]) {
				c.FillNegative("a", 1, time.Hour, c.Stamp("a"))
				c.Wait()
			},
			give: "a",
			want: getResult{negative: true, ok: true},
		},
		{
			name: "invalidated",
			setup: func(t *testing.T, c *Cache[string]) {
				mustFill(t, c, "a", "1")
				c.Invalidate("a")
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "other key invalidated",
			setup: func(t *testing.T, c *Cache[string]) {
				mustFill(t, c, "a", "1")
				c.Invalidate("b")
			},
			give: "a",
			want: getResult{v: "1", ok: true},
		},
		{
			name: "all invalidated",
			setup: func(t *testing.T, c *Cache[string]) {
				mustFill(t, c, "a", "1")
				c.InvalidateAll()
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "stamped before invalidate",
			setup: func(t *testing.T, c *Cache[string]) {
				st := c.Stamp("a")
				c.Invalidate("a")
				c.Fill("a", "old", 1, time.Hour, st)
				c.Wait()
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "stamped before invalidate all",
			setup: func(t *testing.T, c *Cache[string]) {
				st := c.Stamp("a")
				c.InvalidateAll()
				c.Fill("a", "old", 1, time.Hour, st)
				c.Wait()
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "refilled after invalidate",
			setup: func(t *testing.T, c *Cache[string]) {
				mustFill(t, c, "a", "1")
				c.Invalidate("a")
				c.settle()
				mustFill(t, c, "a", "2")
			},
			give: "a",
			want: getResult{v: "2", ok: true},
		},
		{
			name: "refilled after invalidate all",
			setup: func(t *testing.T, c *Cache[string]) {
				mustFill(t, c, "a", "1")
				c.InvalidateAll()
				c.settle()
				mustFill(t, c, "a", "2")
			},
			give: "a",
			want: getResult{v: "2", ok: true},
		},
		{
			name: "stamp of another key",
			setup: func(t *testing.T, c *Cache[string]) {
				c.Fill("a", "1", 1, time.Hour, c.Stamp("b"))
				c.Wait()
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "zero stamp",
			setup: func(t *testing.T, c *Cache[string]) {
				c.Fill("a", "1", 1, time.Hour, Stamp{})
				c.Wait()
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "zero ttl",
			setup: func(t *testing.T, c *Cache[string]) {
				c.Fill("a", "1", 1, 0, c.Stamp("a"))
				c.Wait()
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "expired",
			setup: func(t *testing.T, c *Cache[string]) {
				mustFill(t, c, "a", "1")
				c.now.Add(int64(2 * time.Hour))
			},
			give: "a",
			want: getResult{},
		},
		{
			name: "cost zero counts as one",
			setup: func(t *testing.T, c *Cache[string]) {
				c.Fill("a", "1", 0, time.Hour, c.Stamp("a"))
				c.Wait()
			},
			give: "a",
			want: getResult{v: "1", ok: true},
		},
		{
			name: "closed",
			setup: func(t *testing.T, c *Cache[string]) {
				mustFill(t, c, "a", "1")
				c.Close()
			},
			give: "a",
			want: getResult{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache[string](t, Options{})
			tt.setup(t, c)
			var got getResult
			got.v, got.negative, got.ok = c.Get(tt.give)
			if got != tt.want {
				t.Errorf("Get(%q) = %+v, want %+v", tt.give, got, tt.want)
			}
		})
	}
}

func TestFillResult(t *testing.T) {
	tests := []struct {
		name string
		give func(c *Cache[string]) bool
		want bool
	}{
		{
			name: "current stamp",
			give: func(c *Cache[string]) bool { return c.Fill("a", "1", 1, time.Hour, c.Stamp("a")) },
			want: true,
		},
		{
			name: "negative",
			give: func(c *Cache[string]) bool { return c.FillNegative("a", 1, time.Hour, c.Stamp("a")) },
			want: true,
		},
		{
			name: "stale stamp",
			give: func(c *Cache[string]) bool {
				st := c.Stamp("a")
				c.Invalidate("a")
				return c.Fill("a", "1", 1, time.Hour, st)
			},
			want: false,
		},
		{
			name: "stamp of another key",
			give: func(c *Cache[string]) bool { return c.Fill("a", "1", 1, time.Hour, c.Stamp("b")) },
			want: false,
		},
		{
			name: "negative ttl",
			give: func(c *Cache[string]) bool { return c.Fill("a", "1", 1, -time.Second, c.Stamp("a")) },
			want: false,
		},
		{
			name: "closed",
			give: func(c *Cache[string]) bool {
				c.Close()
				return c.Fill("a", "1", 1, time.Hour, c.Stamp("a"))
			},
			want: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache[string](t, Options{})
			if got := tt.give(c); got != tt.want {
				t.Errorf("Fill = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCurrent(t *testing.T) {
	tests := []struct {
		name string
		give func(c *Cache[string]) Stamp // returns a stamp of "a" after doing things
		want bool
	}{
		{
			name: "fresh",
			give: func(c *Cache[string]) Stamp { return c.Stamp("a") },
			want: true,
		},
		{
			name: "key invalidated",
			give: func(c *Cache[string]) Stamp {
				st := c.Stamp("a")
				c.Invalidate("a")
				return st
			},
			want: false,
		},
		{
			name: "all invalidated",
			give: func(c *Cache[string]) Stamp {
				st := c.Stamp("a")
				c.InvalidateAll()
				return st
			},
			want: false,
		},
		{
			name: "taken after invalidation",
			give: func(c *Cache[string]) Stamp {
				c.Invalidate("a")
				c.InvalidateAll()
				return c.Stamp("a")
			},
			want: true,
		},
		{
			name: "zero",
			give: func(c *Cache[string]) Stamp { return Stamp{} },
			want: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache[string](t, Options{})
			st := tt.give(c)
			if got := c.Current(st); got != tt.want {
				t.Errorf("Current(%+v) = %v, want %v", st, got, tt.want)
			}
		})
	}
}

// TestLateSet is the race the package doc describes: a fill passes its stamp
// check, an invalidation completes, and only then does ristretto apply the
// set. Handing the entry to ristretto directly makes that order certain.
func TestLateSet(t *testing.T) {
	c := newTestCache[string](t, Options{})
	st := c.Stamp("a")
	c.Invalidate("a")
	c.settle() // the janitor's Del must not be what hides the late set
	e := &entry[string]{conflict: maphash.String(c.seed2, "a"), value: "old", expires: int64(time.Hour), slot: st.slot, global: st.global}
	c.rc.Set(st.hash, e, 1)
	c.Wait()
	if got, ok := c.rc.Get(st.hash); !ok || got != e {
		t.Fatalf("ristretto does not hold the late set; the test proves nothing")
	}
	if v, _, ok := c.Get("a"); ok {
		t.Errorf("Get(%q) = %q, true after Invalidate, want a miss", "a", v)
	}
	if got := c.Stats().StampRejections; got != 1 {
		t.Errorf("StampRejections = %d, want 1", got)
	}
}

// TestEpochCollision puts every key in one epoch slot: invalidating one key
// costs the others a miss, never a wrong value.
func TestEpochCollision(t *testing.T) {
	c := newTestCache[string](t, Options{EpochSlots: 1})
	mustFill(t, c, "a", "A")
	mustFill(t, c, "b", "B")
	c.Invalidate("a")
	c.settle() // deletes a, so that only b's miss below is a stamp rejection
	for _, key := range []string{"a", "b"} {
		if v, _, ok := c.Get(key); ok {
			t.Errorf("Get(%q) = %q, true after Invalidate(%q), want a miss", key, v, "a")
		}
	}
	mustFill(t, c, "b", "B2")
	if v, _, ok := c.Get("b"); !ok || v != "B2" {
		t.Errorf("Get(%q) = %q, %v after a refill, want %q, true", "b", v, ok, "B2")
	}
	s := c.Stats()
	if s.StampRejections != 1 || s.EpochCollisions != 1 {
		t.Errorf("StampRejections, EpochCollisions = %d, %d, want 1, 1", s.StampRejections, s.EpochCollisions)
	}
}

// TestHashCollision stores an entry for one key under another key's hash,
// as a collision of the 64-bit key hash would: the conflict hash tells
// them apart, so Get must miss, not return it.
func TestHashCollision(t *testing.T) {
	c := newTestCache[string](t, Options{})
	st := c.Stamp("b")
	c.rc.Set(st.hash, &entry[string]{conflict: maphash.String(c.seed2, "a"), value: "A", expires: int64(time.Hour), slot: st.slot, global: st.global}, 1)
	c.Wait()
	if v, _, ok := c.Get("b"); ok {
		t.Errorf("Get(%q) = %q, true, want a miss", "b", v)
	}
}

func TestInvalidateAllHidesAll(t *testing.T) {
	c := newTestCache[string](t, Options{})
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
		mustFill(t, c, keys[i], keys[i])
	}
	c.InvalidateAll()
	for _, key := range keys {
		if v, _, ok := c.Get(key); ok {
			t.Errorf("Get(%q) = %q, true after InvalidateAll, want a miss", key, v)
		}
	}
}

// TestInvalidateNeverBlocks invalidates far more keys in one call than the
// janitor's queue holds: the call must return, and every key must miss,
// whether or not its Del was queued.
func TestInvalidateNeverBlocks(t *testing.T) {
	c := newTestCache[string](t, Options{})
	keys := make([]string, 3*delQueue)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	for _, key := range keys[:10] {
		mustFill(t, c, key, key)
	}
	c.Invalidate(keys...)
	for _, key := range keys[:10] {
		if v, _, ok := c.Get(key); ok {
			t.Errorf("Get(%q) = %q, true after Invalidate, want a miss", key, v)
		}
	}
	if got := c.Stats().Invalidations; got != uint64(len(keys)) {
		t.Errorf("Invalidations = %d, want %d", got, len(keys))
	}
}

func TestExpiry(t *testing.T) {
	c := newTestCache[string](t, Options{})
	if !c.Fill("a", "1", 1, time.Minute, c.Stamp("a")) {
		t.Fatal("Fill = false, want true")
	}
	c.Wait()
	if _, _, ok := c.Get("a"); !ok {
		t.Fatalf("Get(%q) missed before its ttl", "a")
	}
	c.now.Store(int64(time.Since(c.base) + time.Minute))
	if v, _, ok := c.Get("a"); ok {
		t.Errorf("Get(%q) = %q, true after its ttl, want a miss", "a", v)
	}
	if got := c.Stats().Expired; got != 1 {
		t.Errorf("Expired = %d, want 1", got)
	}
	c.settle()
	c.Wait() // the janitor's Del is replayed through ristretto's buffer
	if got := c.Stats().Entries; got != 0 {
		t.Errorf("Entries = %d after the expired entry was read, want 0", got)
	}
}

// TestExpiryRealClock checks that the clock goroutine advances the coarse
// clock. No event marks the moment it does, so the test polls, bounded by a
// deadline far above the 10ms tick.
func TestExpiryRealClock(t *testing.T) {
	c, err := New[string](Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Fill("a", "1", 1, 5*time.Millisecond, c.Stamp("a")) {
		t.Fatal("Fill = false, want true")
	}
	c.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, ok := c.Get("a"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q) still hits 10s after a 5ms ttl", "a")
		}
		runtime.Gosched()
	}
}

func TestStats(t *testing.T) {
	c := newTestCache[string](t, Options{MaxCost: 100})
	mustFill(t, c, "a", "1")
	mustFill(t, c, "b", "2")
	c.Get("a")
	c.Get("a")
	c.Get("missing")
	c.Fill("c", "3", 1, time.Hour, Stamp{})
	c.Invalidate("a", "x")
	c.Get("a")
	c.settle()
	c.Wait()
	c.InvalidateAll()
	c.settle()

	got := c.Stats()
	want := Stats{
		Hits:            2,
		Misses:          2,
		Sets:            2,
		StaleFills:      1,
		StampRejections: 1,
		Invalidations:   2,
		Clears:          1,
		MaxCost:         100,
	}
	// The Get of "a" after its invalidation is a stamp rejection if it
	// finds the old entry, or a plain miss if the janitor's Del ran first:
	// both are right, and the race between them is real.
	if got.StampRejections > 1 {
		t.Errorf("StampRejections = %d, want at most 1", got.StampRejections)
	}
	want.StampRejections = got.StampRejections
	if got != want {
		t.Errorf("Stats() = %+v\nwant %+v", got, want)
	}
}

// TestEntriesAccounting overfills a small cache and checks that every set
// ristretto accepted is accounted for: stored, evicted or rejected. Which
// keys survive is ristretto's business.
func TestEntriesAccounting(t *testing.T) {
	c := newTestCache[string](t, Options{MaxCost: 10})
	for i := range 100 {
		key := strconv.Itoa(i)
		c.Fill(key, key, 1, time.Hour, c.Stamp(key))
		c.Wait()
	}
	s := c.Stats()
	if s.Entries > 10 || s.CostUsed > 10 {
		t.Errorf("Entries, CostUsed = %d, %d, want both <= MaxCost 10", s.Entries, s.CostUsed)
	}
	if s.CostUsed != s.Entries {
		t.Errorf("CostUsed = %d, want Entries = %d (every cost is 1)", s.CostUsed, s.Entries)
	}
	if got := uint64(s.Entries) + s.Evictions + s.Rejections; got != s.Sets {
		t.Errorf("Entries + Evictions + Rejections = %d, want Sets = %d (%+v)", got, s.Sets, s)
	}
}

func TestClose(t *testing.T) {
	c, err := New[string](Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustFill(t, c, "a", "1")
	c.Close()
	c.Close()

	if v, _, ok := c.Get("a"); ok {
		t.Errorf("Get(%q) = %q, true after Close, want a miss", "a", v)
	}
	if c.Fill("b", "2", 1, time.Hour, c.Stamp("b")) {
		t.Errorf("Fill after Close = true, want false")
	}
	c.Invalidate("a")
	c.InvalidateAll()
	c.Wait()
	if s := c.Stats(); s.Invalidations != 0 || s.Clears != 0 || s.Entries != 0 || s.CostUsed != 0 {
		t.Errorf("Stats() after Close = %+v, want no invalidations, clears, entries or cost", s)
	}
}

func TestHitAllocs(t *testing.T) {
	c := newTestCache[*int](t, Options{})
	v := 42
	if !c.Fill("key", &v, 1, time.Hour, c.Stamp("key")) {
		t.Fatal("Fill = false, want true")
	}
	c.Wait()
	if _, _, ok := c.Get("key"); !ok {
		t.Fatal("Get missed after Fill and Wait")
	}
	allocs := testing.AllocsPerRun(1000, func() {
		c.Get("key")
	})
	if allocs != 0 {
		t.Errorf("Get (hit) allocates %v times per call, want 0", allocs)
	}
}
