package tiered

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestGetMany(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		ctx := context.Background()
		if err := c.SetMany(ctx, map[string]string{"a": "A", "b": "B", "c": "C"}); err != nil {
			t.Fatal(err)
		}
		before := c.Stats().L2.RoundTrips
		got, err := c.GetMany(ctx, []string{"a", "b", "x", "a"})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"a": "A", "b": "B"}; !maps.Equal(got, want) {
			t.Errorf("GetMany = %v, want %v", got, want)
		}
		if rt := c.Stats().L2.RoundTrips - before; rt != 1 {
			t.Errorf("GetMany took %d round trips, want 1", rt)
		}
	})
}

func TestGetOrLoadManyOnlyMissing(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		ctx := context.Background()
		if err := c.Set(ctx, "a", "A"); err != nil {
			t.Fatal(err)
		}
		var asked [][]string
		loader := func(_ context.Context, keys []string) (map[string]string, error) {
			asked = append(asked, slices.Sorted(slices.Values(keys)))
			out := map[string]string{}
			for _, k := range keys {
				if k != "none" {
					out[k] = "L-" + k
				}
			}
			return out, nil
		}
		got, err := c.GetOrLoadMany(ctx, []string{"a", "b", "c", "none", "b"}, loader)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"a": "A", "b": "L-b", "c": "L-c"}; !maps.Equal(got, want) {
			t.Errorf("GetOrLoadMany = %v, want %v", got, want)
		}
		if len(asked) != 1 || !slices.Equal(asked[0], []string{"b", "c", "none"}) {
			t.Errorf("loader asked %v, want one call with [b c none]", asked)
		}
		// "none" is now a negative entry; b and c are in L2.
		asked = nil
		got, err = c.GetOrLoadMany(ctx, []string{"b", "c", "none"}, loader)
		if err != nil || len(asked) != 0 || len(got) != 2 {
			t.Errorf("second GetOrLoadMany = %v, %v, loader asked %v; want 2 values, no loads", got, err, asked)
		}
	})
}

// TestOverlappingBatchesLoadEachKeyOnce runs batches whose key sets overlap,
// plus single-key calls, concurrently: every key is loaded exactly once.
func TestOverlappingBatchesLoadEachKeyOnce(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		release := make(chan struct{})
		var mu sync.Mutex
		loaded := map[string]int{}
		var calls atomic.Int64
		loader := func(_ context.Context, keys []string) (map[string]string, error) {
			calls.Add(1)
			<-release
			mu.Lock()
			defer mu.Unlock()
			out := map[string]string{}
			for _, k := range keys {
				loaded[k]++
				out[k] = "v" + k
			}
			return out, nil
		}
		batches := [][]string{{"1", "2", "3"}, {"2", "3", "4"}, {"3", "4", "5"}, {"1", "5"}}
		var wg sync.WaitGroup
		results := make([]map[string]string, len(batches))
		for i, b := range batches {
			wg.Go(func() {
				m, err := c.GetOrLoadMany(context.Background(), b, loader)
				if err != nil {
					t.Errorf("batch %v: %v", b, err)
				}
				results[i] = m
			})
			// Start them one after another so each claims what is free.
			eventually(t, 5*time.Second, func() bool {
				return c.flight.len() == len(batchKeys(batches[:i+1]))
			}, "batch claimed its keys")
		}
		single := make(chan string, 1)
		wg.Go(func() {
			v, err := c.GetOrLoad(context.Background(), "4", func(context.Context, string) (string, error) {
				t.Errorf("single-key loader called for a key a batch is loading")
				return "", nil
			})
			if err != nil {
				t.Errorf("GetOrLoad(4): %v", err)
			}
			single <- v
		})
		close(release)
		wg.Wait()
		for k, n := range loaded {
			if n != 1 {
				t.Errorf("key %s loaded %d times, want 1", k, n)
			}
		}
		if len(loaded) != 5 {
			t.Errorf("loaded %d keys, want 5", len(loaded))
		}
		for i, b := range batches {
			for _, k := range b {
				if results[i][k] != "v"+k {
					t.Errorf("batch %v result[%s] = %q, want %q", b, k, results[i][k], "v"+k)
				}
			}
		}
		if v := <-single; v != "v4" {
			t.Errorf("GetOrLoad(4) = %q, want v4", v)
		}
	})
}

func batchKeys(bs [][]string) map[string]bool {
	m := map[string]bool{}
	for _, b := range bs {
		for _, k := range b {
			m[k] = true
		}
	}
	return m
}

func TestGetOrLoadManyLoaderError(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	ctx := context.Background()
	if err := c.Set(ctx, "a", "A"); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	got, err := c.GetOrLoadMany(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]string, error) {
		return nil, boom
	})
	if !errors.Is(err, boom) || got["a"] != "A" {
		t.Errorf("GetOrLoadMany = %v, %v; want map with a and %v", got, err, boom)
	}
	// b's lease was released: it loads at once.
	got, err = c.GetOrLoadMany(ctx, []string{"b"}, func(context.Context, []string) (map[string]string, error) {
		return map[string]string{"b": "B"}, nil
	})
	if err != nil || got["b"] != "B" || c.Stats().LeaseWaits != 0 {
		t.Errorf("after a failed batch: %v, %v, LeaseWaits=%d; want b loaded without waiting", got, err, c.Stats().LeaseWaits)
	}
}

// TestBatchMixedOutcomes: one GetOrLoadMany whose keys are an L2 hit, a
// miss it leases, and a key another node is loading; each is handled on
// its own and the loader sees only the leased key.
func TestBatchMixedOutcomes(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		cs := nodes(t, s, 2, nil)
		a, b := cs[0], cs[1]
		ctx := context.Background()
		if err := a.Set(ctx, "hit", "H"); err != nil {
			t.Fatal(err)
		}
		holdB, bStarted := make(chan struct{}), make(chan struct{})
		bDone := make(chan struct{})
		go func() {
			defer close(bDone)
			_, _ = b.GetOrLoad(ctx, "held", func(context.Context, string) (string, error) {
				close(bStarted)
				<-holdB
				return "from-b", nil
			})
		}()
		<-bStarted
		var asked [][]string
		got := make(chan map[string]string, 1)
		go func() {
			m, err := a.GetOrLoadMany(ctx, []string{"hit", "miss", "held"}, func(_ context.Context, keys []string) (map[string]string, error) {
				asked = append(asked, slices.Clone(keys))
				return map[string]string{"miss": "from-a"}, nil
			})
			if err != nil {
				t.Errorf("GetOrLoadMany: %v", err)
			}
			got <- m
		}()
		eventually(t, 5*time.Second, func() bool { return a.Stats().LeaseWaits == 1 }, "a waits on b's lease")
		close(holdB)
		<-bDone
		m := <-got
		if want := map[string]string{"hit": "H", "miss": "from-a", "held": "from-b"}; !maps.Equal(m, want) {
			t.Errorf("GetOrLoadMany = %v, want %v", m, want)
		}
		if len(asked) != 1 || !slices.Equal(asked[0], []string{"miss"}) {
			t.Errorf("loader asked %v, want one call with [miss]", asked)
		}
		if st := a.Stats(); st.LeaseWaitHits != 1 || st.L2.LeasesGranted != 1 {
			t.Errorf("LeaseWaitHits=%d LeasesGranted=%d, want 1 and 1", st.LeaseWaitHits, st.L2.LeasesGranted)
		}
	})
}
