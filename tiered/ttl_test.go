package tiered

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// pttl returns the L2 TTL left on key.
func pttl(t *testing.T, s *redistest.Server, key string) time.Duration {
	t.Helper()
	d, err := s.Client(t).PTTL(context.Background(), "test:"+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// within reports whether got is in (want-slack, want].
func within(got, want, slack time.Duration) bool { return got <= want && got > want-slack }

// waitL1Gone polls until L1 no longer serves key, failing after limit.
func waitL1Gone(t *testing.T, c *Cache[string], key string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, _, ok := c.l1.Get(key); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("L1 still serves %q %v later", key, limit)
		}
		time.Sleep(5 * time.Millisecond) // polling an expiry: nothing to wait on
	}
}

// TestLoaderChoosesTTL: a loader's ChooseTTL sets the L2 TTL of its value
// and of its not-found answer, caps L1 (LocalTTL is a minute here), and a
// ttl <= 0 caches the answer nowhere.
func TestLoaderChoosesTTL(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, func(o *Options) { o.LocalTTL = time.Minute })
		ctx := context.Background()
		loader := func(ctx context.Context, key string) (string, error) {
			switch key {
			case "short":
				if !ChooseTTL(ctx, key, 300*time.Millisecond) {
					t.Error("ChooseTTL(short) refused inside the loader")
				}
				return "v", nil
			case "missing":
				ChooseTTL(ctx, key, 7*time.Second)
				return "", ErrNotFound
			case "uncached":
				ChooseTTL(ctx, key, 0)
				return "once", nil
			case "other":
				if ChooseTTL(ctx, "not-this-load", time.Second) {
					t.Error("ChooseTTL accepted a key the load is not for")
				}
				return "v", nil
			}
			return "", errors.New("unexpected key " + key)
		}
		if v, err := c.GetOrLoad(ctx, "short", loader); err != nil || v != "v" {
			t.Fatalf("GetOrLoad(short) = %q, %v", v, err)
		}
		if d := pttl(t, s, "short"); !within(d, 300*time.Millisecond, 200*time.Millisecond) {
			t.Errorf("PTTL(short) = %v, want the chosen 300ms", d)
		}
		warmGetOrLoad(t, c, "short", loader)
		waitL1Gone(t, c, "short", 2*time.Second) // LocalTTL alone would keep it a minute

		if _, err := c.GetOrLoad(ctx, "missing", loader); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetOrLoad(missing) = %v, want ErrNotFound", err)
		}
		if d := pttl(t, s, "missing"); !within(d, 7*time.Second, time.Second) {
			t.Errorf("PTTL(missing) = %v, want the chosen 7s, not NegativeTTL", d)
		}

		if v, err := c.GetOrLoad(ctx, "uncached", loader); err != nil || v != "once" {
			t.Fatalf("GetOrLoad(uncached) = %q, %v", v, err)
		}
		if d := pttl(t, s, "uncached"); d != -2*time.Nanosecond && d >= 0 {
			t.Errorf("PTTL(uncached) = %v: a ttl of 0 was cached in L2", d)
		}
		if n, _ := s.Client(t).Exists(ctx, "test:uncached").Result(); n != 0 {
			t.Error("a ttl of 0 left the key (or its lease) in L2")
		}
		c.l1.Wait()
		if _, _, ok := c.l1.Get("uncached"); ok {
			t.Error("a ttl of 0 was cached in L1")
		}

		if _, err := c.GetOrLoad(ctx, "other", loader); err != nil {
			t.Fatal(err)
		}
		if ChooseTTL(ctx, "short", time.Second) {
			t.Error("ChooseTTL outside a loader took effect")
		}
	})
}

// warmGetOrLoad reads key through GetOrLoad until L1 holds it.
func warmGetOrLoad(t *testing.T, c *Cache[string], key string, loader Loader[string]) {
	t.Helper()
	for range 100 {
		if _, err := c.GetOrLoad(context.Background(), key, loader); err != nil {
			t.Fatal(err)
		}
		c.l1.Wait()
		if _, _, ok := c.l1.Get(key); ok {
			return
		}
	}
	t.Fatalf("L1 never admitted %q", key)
}

// TestBatchLoaderChoosesTTLPerKey: a batch loader chooses a TTL for some
// keys; the others keep Options.TTL.
func TestBatchLoaderChoosesTTLPerKey(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, func(o *Options) { o.TTL = time.Minute })
		ctx := context.Background()
		m, err := c.GetOrLoadMany(ctx, []string{"a", "b", "c"}, func(ctx context.Context, keys []string) (map[string]string, error) {
			ChooseTTL(ctx, "a", 5*time.Second)
			ChooseTTL(ctx, "c", 3*time.Second) // c is not found
			return map[string]string{"a": "A", "b": "B"}, nil
		})
		if err != nil || m["a"] != "A" || m["b"] != "B" {
			t.Fatalf("GetOrLoadMany = %v, %v", m, err)
		}
		for key, want := range map[string]time.Duration{"a": 5 * time.Second, "b": time.Minute, "c": 3 * time.Second} {
			if d := pttl(t, s, key); !within(d, want, time.Second) {
				t.Errorf("PTTL(%s) = %v, want %v", key, d, want)
			}
		}
	})
}

// TestSetWithTTL: WithTTL sets the L2 TTL of a write and caps L1; a ttl
// <= 0 is an *OptionError and writes nothing.
func TestSetWithTTL(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, func(o *Options) { o.LocalTTL = time.Minute })
		ctx := context.Background()
		if err := c.Set(ctx, "k", "v", WithTTL(400*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if d := pttl(t, s, "k"); !within(d, 400*time.Millisecond, 200*time.Millisecond) {
			t.Errorf("PTTL(k) = %v, want 400ms", d)
		}
		if err := c.SetMany(ctx, map[string]string{"x": "1", "y": "2"}, WithTTL(9*time.Second)); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"x", "y"} {
			if d := pttl(t, s, key); !within(d, 9*time.Second, time.Second) {
				t.Errorf("PTTL(%s) = %v, want 9s", key, d)
			}
		}
		for range 100 {
			if _, err := c.Get(ctx, "k"); err != nil {
				break // expired from L2 already on a slow machine: L1 cannot hold it either
			}
			c.l1.Wait()
			if _, _, ok := c.l1.Get("k"); ok {
				break
			}
		}
		waitL1Gone(t, c, "k", 2*time.Second)

		err := c.Set(ctx, "z", "v", WithTTL(0))
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Option != "WithTTL" {
			t.Fatalf("Set with WithTTL(0) = %v, want an *OptionError", err)
		}
		if n, _ := s.Client(t).Exists(ctx, "test:z").Result(); n != 0 {
			t.Error("a refused Set wrote its key")
		}
	})
}
