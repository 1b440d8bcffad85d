package tiered

import (
	"context"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
)

type product struct {
	ID    int
	Name  string
	Price float64
}

// warmL1 loads key until L1 serves it (ristretto may drop a first set).
func warmL1(tb testing.TB, c *Cache[*product], key string) {
	tb.Helper()
	ctx := context.Background()
	loader := func(context.Context, string) (*product, error) {
		return &product{ID: 1, Name: "widget", Price: 9.5}, nil
	}
	for range 100 {
		if _, err := c.GetOrLoad(ctx, key, loader); err != nil {
			tb.Fatal(err)
		}
		c.l1.Wait()
		if _, _, ok := c.l1.Get(key); ok {
			return
		}
	}
	tb.Fatalf("L1 never admitted %q", key)
}

// TestHitAllocs pins promise 1: an L1 hit allocates nothing.
func TestHitAllocs(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[*product](t, s, nil)
	warmL1(t, c, "42")
	ctx := context.Background()
	before := c.Stats().L2.RoundTrips
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Get(ctx, "42"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("L1 hit: %v allocs per Get, want 0", allocs)
	}
	loader := func(context.Context, string) (*product, error) { return nil, nil }
	allocs = testing.AllocsPerRun(1000, func() {
		if _, err := c.GetOrLoad(ctx, "42", loader); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("L1 hit: %v allocs per GetOrLoad, want 0", allocs)
	}
	if rt := c.Stats().L2.RoundTrips - before; rt != 0 {
		t.Errorf("L1 hits made %d Redis round trips, want 0", rt)
	}
}

// TestEnvelopeHeaderLen checks the header length the raw benchmark
// baselines skip: what follows it must be the bare JSON of the value.
func TestEnvelopeHeaderLen(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[*product](t, s, func(o *Options) { o.DisableCompression = true })
	ctx := context.Background()
	if err := c.Set(ctx, "p", &product{ID: 7}); err != nil {
		t.Fatal(err)
	}
	raw, err := c.opts.Redis.Get(ctx, "test:p").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(raw[envelopeHeader(raw):]), `{"ID":7,"Name":"","Price":0}`; got != want {
		t.Errorf("value after the header = %q, want %q", got, want)
	}
}

// TestHitAllocsStructValue is TestHitAllocs for a struct V, which the hit
// path hands on by pointer and copies once: still no allocation, and the
// caller gets its own copy.
func TestHitAllocsStructValue(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[product](t, s, nil)
	ctx := context.Background()
	want := product{ID: 1, Name: "widget", Price: 9.5}
	loader := func(context.Context, string) (product, error) { return want, nil }
	for i := 0; ; i++ {
		if _, err := c.GetOrLoad(ctx, "42", loader); err != nil {
			t.Fatal(err)
		}
		c.l1.Wait()
		if _, _, ok := c.l1.Get("42"); ok {
			break
		}
		if i == 100 {
			t.Fatal("L1 never admitted the key")
		}
	}
	got, err := c.Get(ctx, "42")
	if err != nil || got != want {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
	}
	got.Name = "changed by the caller"
	if again, _ := c.Get(ctx, "42"); again != want {
		t.Errorf("a caller's change to its copy reached the cache: %+v", again)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Get(ctx, "42"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("L1 hit of a struct: %v allocs per Get, want 0", allocs)
	}
}
