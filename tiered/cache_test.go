package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

func TestSetGetDelete(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		c := newNode[string](t, s, nil)
		if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(k) before Set: err = %v, want ErrNotFound", err)
		}
		if err := c.Set(ctx, "k", "v1"); err != nil {
			t.Fatalf("Set: %v", err)
		}
		for i := range 3 { // L2 fill, then (maybe) L1 hits
			if got, err := c.Get(ctx, "k"); err != nil || got != "v1" {
				t.Fatalf("Get(k) #%d = %q, %v; want v1", i, got, err)
			}
			c.l1.Wait()
		}
		if err := c.Set(ctx, "k", "v2"); err != nil {
			t.Fatalf("Set: %v", err)
		}
		if got, err := c.Get(ctx, "k"); err != nil || got != "v2" {
			t.Fatalf("Get(k) after second Set = %q, %v; want v2", got, err)
		}
		if err := c.Delete(ctx, "k", "absent"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if got, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(k) after Delete = %q, %v; want ErrNotFound", got, err)
		}
		// The L2 key is readable by redis-cli as ns:key.
		if err := c.Set(ctx, "k", "v3"); err != nil {
			t.Fatalf("Set: %v", err)
		}
		if n, err := c.opts.Redis.Exists(ctx, "test:k").Result(); err != nil || n != 1 {
			t.Errorf("EXISTS test:k = %d, %v; want 1", n, err)
		}
	})
}

func TestSetDoesNotFillOwnL1(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.l1.Wait()
	if _, _, ok := c.l1.Get("k"); ok {
		t.Errorf("L1 holds k right after Set; Set must not install its value locally")
	}
}

func TestKeyAndValueErrors(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, func(o *Options) { o.MaxKeySize = 8; o.MaxValueSize = 64 })
	ctx := context.Background()
	var ke *KeyError
	if _, err := c.Get(ctx, ""); !errors.As(err, &ke) {
		t.Errorf("Get(\"\") err = %v, want *KeyError", err)
	}
	if err := c.Set(ctx, "much-too-long", "v"); !errors.As(err, &ke) {
		t.Errorf("Set(long key) err = %v, want *KeyError", err)
	}
	if _, err := c.GetOrLoad(ctx, "", func(context.Context, string) (string, error) { return "", nil }); !errors.As(err, &ke) {
		t.Errorf("GetOrLoad(\"\") err = %v, want *KeyError", err)
	}
	var ve *ValueSizeError
	big := strings.Repeat("x", 200)
	if err := c.SetMany(ctx, map[string]string{"a": "small", "b": big}); !errors.As(err, &ve) {
		t.Fatalf("SetMany(oversized) err = %v, want *ValueSizeError", err)
	}
	// Nothing was written: bad input loses nothing and half-writes nothing.
	if n, err := c.opts.Redis.Exists(ctx, "test:a", "test:b").Result(); err != nil || n != 0 {
		t.Errorf("after rejected SetMany, EXISTS = %d, %v; want 0", n, err)
	}
	// An oversized loaded value is returned but cached nowhere.
	got, err := c.GetOrLoad(ctx, "big", func(context.Context, string) (string, error) { return big, nil })
	if err != nil || got != big {
		t.Errorf("GetOrLoad(big) = %d bytes, %v; want the value", len(got), err)
	}
	if n, _ := c.opts.Redis.Exists(ctx, "test:big").Result(); n != 0 {
		t.Errorf("oversized value reached L2")
	}
	if c.Stats().Oversize != 1 {
		t.Errorf("Stats().Oversize = %d, want 1", c.Stats().Oversize)
	}
}

func TestClosed(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	ctx := context.Background()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if _, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("GetOrLoad after Close: %v, want ErrClosed", err)
	}
	if err := c.Set(ctx, "k", "v"); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v, want ErrClosed", err)
	}
	if _, err := c.GetMany(ctx, []string{"k"}); !errors.Is(err, ErrClosed) {
		t.Errorf("GetMany after Close: %v, want ErrClosed", err)
	}
	if _, err := c.GetOrLoadMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) {
		t.Errorf("loader called after Close")
		return nil, nil
	}); !errors.Is(err, ErrClosed) {
		t.Errorf("GetOrLoadMany after Close: %v, want ErrClosed", err)
	}
	if err := c.SetMany(ctx, map[string]string{"k": "v"}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetMany after Close: %v, want ErrClosed", err)
	}
	if err := c.Delete(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close: %v, want ErrClosed", err)
	}
	if err := c.Clear(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Clear after Close: %v, want ErrClosed", err)
	}
}

// TestCloseDuringLoad: Close cancels a load in progress; its waiters get
// ErrClosed and its lease is released.
func TestCloseDuringLoad(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (string, error) {
			close(started)
			<-ctx.Done()
			return "", ctx.Err()
		})
		done <- err
	}()
	<-started
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("waiter of a load cut by Close got %v, want ErrClosed", err)
	}
	if n, _ := s.Client(t).Exists(context.Background(), "test:k").Result(); n != 0 {
		t.Errorf("the lease outlived Close")
	}
}

func TestGetOrLoadCoalesces(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		var calls atomic.Int64
		release := make(chan struct{})
		loader := func(ctx context.Context, key string) (string, error) {
			calls.Add(1)
			<-release
			return "v-" + key, nil
		}
		const n = 50
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				v, err := c.GetOrLoad(context.Background(), "k", loader)
				if err == nil && v != "v-k" {
					err = fmt.Errorf("got %q", v)
				}
				errs <- err
			})
		}
		eventually(t, 5*time.Second, func() bool { return calls.Load() == 1 && c.Stats().Dedupes == n-1 }, "all callers joined one load")
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("GetOrLoad: %v", err)
			}
		}
		if got := calls.Load(); got != 1 {
			t.Errorf("loader calls = %d, want 1", got)
		}
	})
}

func TestGetOrLoadNegative(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		ctx := context.Background()
		var calls atomic.Int64
		loader := func(context.Context, string) (string, error) { calls.Add(1); return "", ErrNotFound }
		for i := range 3 {
			if _, err := c.GetOrLoad(ctx, "gone", loader); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetOrLoad #%d err = %v, want ErrNotFound", i, err)
			}
		}
		if got := calls.Load(); got != 1 {
			t.Errorf("loader calls = %d, want 1 (negative entry cached)", got)
		}
		if _, err := c.Get(ctx, "gone"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(gone) = %v, want ErrNotFound", err)
		}
		ttl, err := c.opts.Redis.PTTL(ctx, "test:gone").Result()
		if err != nil || ttl <= 0 || ttl > c.opts.NegativeTTL {
			t.Errorf("PTTL of negative entry = %v, %v; want in (0, %v]", ttl, err, c.opts.NegativeTTL)
		}
	})
}

func TestLoaderErrorNotCached(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	ctx := context.Background()
	boom := errors.New("db down")
	if _, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Fatalf("GetOrLoad err = %v, want %v", err, boom)
	}
	// The lease was released: the next call loads at once, no LeaseWait.
	start := time.Now()
	got, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "ok", nil })
	if err != nil || got != "ok" {
		t.Fatalf("GetOrLoad after error = %q, %v; want ok", got, err)
	}
	if c.Stats().LeaseWaits != 0 {
		t.Errorf("LeaseWaits = %d after a failed load, want 0 (lease released) (took %v)", c.Stats().LeaseWaits, time.Since(start))
	}
}

func TestLoaderPanic(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	release := make(chan struct{})
	var calls atomic.Int64
	loader := func(context.Context, string) (string, error) {
		calls.Add(1)
		<-release
		panic("kaboom")
	}
	const n = 5
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.GetOrLoad(context.Background(), "k", loader)
			errs <- err
		}()
	}
	eventually(t, 5*time.Second, func() bool { return c.Stats().Dedupes == n-1 }, "callers joined")
	close(release)
	for range n {
		var pe *PanicError
		if err := <-errs; !errors.As(err, &pe) || pe.Value != "kaboom" || len(pe.Stack) == 0 {
			t.Errorf("GetOrLoad after panic: %v, want *PanicError with value and stack", err)
		}
	}
	if c.Stats().Panics != 1 || calls.Load() != 1 {
		t.Errorf("Panics = %d, calls = %d; want 1, 1", c.Stats().Panics, calls.Load())
	}
}

func TestLoadSurvivesFirstCallerCancel(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	release := make(chan struct{})
	loader := func(ctx context.Context, _ string) (string, error) {
		<-release
		return "v", ctx.Err()
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := c.GetOrLoad(ctx1, "k", loader); first <- err }()
	second := make(chan error, 1)
	eventually(t, 5*time.Second, func() bool { return c.Stats().Loads == 1 }, "load started")
	go func() { _, err := c.GetOrLoad(context.Background(), "k", loader); second <- err }()
	eventually(t, 5*time.Second, func() bool { return c.Stats().Dedupes == 1 }, "second caller joined")
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-second; err != nil {
		t.Errorf("second caller: %v; the shared load must not die with its first caller", err)
	}
}

// TestStaleFillCannotResurrect is the deterministic race of promise 3 on one
// node: a load reads the old value, a write lands, then the load finishes.
func TestStaleFillCannotResurrect(t *testing.T) {
	for _, write := range []string{"set", "delete"} {
		t.Run(write, func(t *testing.T) {
			redistest.Run(t, func(t *testing.T, s *redistest.Server) {
				c := newNode[string](t, s, nil)
				ctx := context.Background()
				started, release := make(chan struct{}), make(chan struct{})
				loader := func(context.Context, string) (string, error) {
					close(started)
					<-release
					return "old", nil
				}
				done := make(chan string, 1)
				go func() { v, _ := c.GetOrLoad(ctx, "k", loader); done <- v }()
				<-started
				var err error
				if write == "set" {
					err = c.Set(ctx, "k", "new")
				} else {
					err = c.Delete(ctx, "k")
				}
				if err != nil {
					t.Fatalf("%s: %v", write, err)
				}
				close(release)
				<-done // the racing caller may see "old": its call began before the write
				c.l1.Wait()
				if _, _, ok := c.l1.Get("k"); ok {
					t.Errorf("L1 serves k after %s; the stale fill was installed", write)
				}
				raw, _ := c.opts.Redis.Get(ctx, "test:k").Bytes() // redis.Nil: nothing stored, as wanted
				if strings.Contains(string(raw), "old") {
					t.Errorf("L2 holds the stale value %q after %s", raw, write)
				}
				got, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "reloaded", nil })
				want := map[string]string{"set": "new", "delete": "reloaded"}[write]
				if err != nil || got != want {
					t.Errorf("GetOrLoad after %s = %q, %v; want %q", write, got, err, want)
				}
				if c.Stats().L2.FillsRefused != 1 {
					t.Errorf("FillsRefused = %d, want 1", c.Stats().L2.FillsRefused)
				}
			})
		})
	}
}

func TestGarbageInL2(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		ctx := context.Background()
		for _, junk := range []string{"", "x", "\x00\x01\x02garbage", strings.Repeat("\xff", 100)} {
			if err := c.opts.Redis.Set(ctx, "test:k", junk, 0).Err(); err != nil {
				t.Fatal(err)
			}
			before := c.Stats().L2.DecodeErrors
			if got, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get over junk %q = %q, %v; want ErrNotFound", junk, got, err)
			}
			m, err := c.GetMany(ctx, []string{"k"})
			if err != nil || len(m) != 0 {
				t.Errorf("GetMany over junk %q = %v, %v; want empty", junk, m, err)
			}
			got, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "loaded", nil })
			if err != nil || got != "loaded" {
				t.Errorf("GetOrLoad over junk %q = %q, %v; want loaded", junk, got, err)
			}
			if after := c.Stats().L2.DecodeErrors; after <= before {
				t.Errorf("decode errors did not grow over junk %q (%d -> %d)", junk, before, after)
			}
			c.l1.InvalidateAll()
		}
	})
}

func TestRedisDownDegrades(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, func(o *Options) { o.RedisTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	s.Mini().Close()
	got, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "from-db", nil })
	if err != nil || got != "from-db" {
		t.Errorf("GetOrLoad with Redis down = %q, %v; want from-db", got, err)
	}
	if c.Stats().L2Errors == 0 {
		t.Errorf("L2Errors = 0 with Redis down, want > 0")
	}
	if err := c.Set(ctx, "k", "v"); err == nil {
		t.Errorf("Set with Redis down = nil, want an error")
	}
	m, err := c.GetOrLoadMany(ctx, []string{"a", "b"}, func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{"a": "A"}, nil
	})
	if err != nil || m["a"] != "A" || len(m) != 1 {
		t.Errorf("GetOrLoadMany with Redis down = %v, %v; want map[a:A]", m, err)
	}
}

func TestCodecs(t *testing.T) {
	type product struct {
		ID    int
		Name  string
		Price float64
	}
	for _, codec := range []Codec{remote.JSON{}, remote.Msgpack{}} {
		t.Run(fmt.Sprintf("%T", codec), func(t *testing.T) {
			s := redistest.Mini(t)
			c := newNode[product](t, s, func(o *Options) { o.Codec = codec })
			ctx := context.Background()
			want := product{42, strings.Repeat("widget ", 500), 9.5} // big enough to compress
			if err := c.Set(ctx, "42", want); err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, "42")
			if err != nil || got != want {
				t.Errorf("Get(42) = %+v, %v; want %+v", got.ID, err, want.ID)
			}
		})
	}
}

// TestL1TTLCappedByL2 fills L1 from an entry with little L2 TTL left: L1
// must let it go when L2 does, not after LocalTTL.
func TestL1TTLCappedByL2(t *testing.T) {
	s := redistest.Mini(t)
	short := newNode[string](t, s, func(o *Options) { o.TTL = 300 * time.Millisecond })
	long := newNode[string](t, s, func(o *Options) { o.TTL = time.Hour; o.LocalTTL = time.Hour })
	ctx := context.Background()
	if err := short.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	warm(t, []*Cache[string]{long}, "k", "v")
	// miniredis expires keys only when told; the cap must come from the
	// expiry in the envelope, not from Redis removing the key.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, ok := long.l1.Get("k")
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("L1 still serves k 5s after its 300ms L2 TTL: the L1 TTL is not capped")
		}
		time.Sleep(time.Millisecond) // poll interval with a deadline
	}
}
