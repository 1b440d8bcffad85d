package tiered

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// outageNode makes a cache whose Redis traffic, L2 and bus alike, goes
// through a fault proxy, with the proxy already in the state fault puts
// it in, so the cache starts during the fault. The client honours
// RedisTimeout on the socket (ContextTimeoutEnabled), as the README
// advises.
func outageNode(t *testing.T, s *redistest.Server, fault func(*faultproxy.Proxy), mods ...func(*Options)) (*Cache[string], *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	fault(p)
	rdb := redis.NewClient(&redis.Options{
		Addr: p.Addr(), DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second,
		WriteTimeout: time.Second, ContextTimeoutEnabled: true, MaxRetries: -1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	o := Options{
		Redis: rdb, Namespace: "test", HeartbeatInterval: 50 * time.Millisecond, MaxStaleness: time.Second,
		RedisTimeout: 200 * time.Millisecond, DisableJitter: true,
	}
	for _, mod := range mods {
		mod(&o)
	}
	c, err := New[string](o)
	if err != nil {
		t.Fatalf("New during the fault = %v, want a cache", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, p
}

// TestOutage: for each way Redis can be unreachable, a cache starts during
// it, reads through the loader, skips Redis entirely once its breaker has
// opened (no round trip is sent), fails writes at once with
// ErrUnavailable, and heals by itself when the fault ends: the breaker
// closes, the bus proves itself again and L1 serves.
func TestOutage(t *testing.T) {
	type fault struct {
		name    string
		on, off func(*faultproxy.Proxy, *redistest.Server)
	}
	pass := func(p *faultproxy.Proxy, _ *redistest.Server) { p.Pass(); p.Refuse(false); p.Blackhole(false) }
	faults := []fault{
		{"refused", func(p *faultproxy.Proxy, _ *redistest.Server) { p.Refuse(true); p.ResetAll() }, pass},
		{"blackholed", func(p *faultproxy.Proxy, _ *redistest.Server) { p.Blackhole(true) }, pass},
		{"slow replies", func(p *faultproxy.Proxy, _ *redistest.Server) { p.DelayReplies(time.Second) }, pass},
		{"paused server", func(_ *faultproxy.Proxy, s *redistest.Server) { s.Pause(t) },
			func(_ *faultproxy.Proxy, s *redistest.Server) { s.Resume(t) }},
		{"restarted server", func(p *faultproxy.Proxy, s *redistest.Server) { p.Refuse(true); p.ResetAll(); s.Restart(t) }, pass},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			s := redistest.Real(t)
			// A first open window of a second, so that the calls below all
			// fall inside it on a slow machine (a probe would reach Redis).
			c, p := outageNode(t, s, func(p *faultproxy.Proxy) { f.on(p, s) }, func(o *Options) { o.BreakerMinOpen = time.Second })
			ctx := context.Background()
			var loads atomic.Int64
			load := func(_ context.Context, k string) (string, error) {
				loads.Add(1)
				return "db-" + k, nil
			}
			if st := c.Stats().State; st == StateConnected {
				t.Fatalf("State during the fault = %s", st)
			}
			for i := 0; c.Stats().State != StateDegraded; i++ {
				if i == 50 {
					t.Fatalf("breaker still closed after %d reads through a broken Redis: %+v", i, c.Stats().L2)
				}
				if v, err := c.GetOrLoad(ctx, fmt.Sprint("warm", i), load); err != nil || v != fmt.Sprint("db-warm", i) {
					t.Fatalf("GetOrLoad during the fault = %q, %v; want the loader's value", v, err)
				}
			}

			// Breaker open: nothing goes to Redis.
			sent := c.Stats().L2.RoundTrips
			for i := range 20 {
				if v, err := c.GetOrLoad(ctx, fmt.Sprint("k", i), load); err != nil || v != fmt.Sprint("db-k", i) {
					t.Fatalf("GetOrLoad with the breaker open = %q, %v; want the loader's value", v, err)
				}
			}
			if err := c.Set(ctx, "k0", "new"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Set with the breaker open = %v, want ErrUnavailable", err)
			}
			if err := c.Delete(ctx, "k0"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Delete with the breaker open = %v, want ErrUnavailable", err)
			}
			if _, err := c.Get(ctx, "k0"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Get with the breaker open = %v, want ErrUnavailable", err)
			}
			st := c.Stats()
			// At most one probe may have gone out meanwhile.
			if n := st.L2.RoundTrips - sent; n > 1 {
				t.Errorf("%d round trips sent with the breaker open, want at most one probe", n)
			}
			if st.L2.BreakerRejected == 0 || st.L2.BreakerOpens == 0 {
				t.Errorf("breaker stats %+v: want it opened and rejecting", st.L2)
			}

			f.off(p, s)
			ready, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.WaitReady(ready); err != nil {
				t.Fatalf("WaitReady after the fault ended: %v (state %s)", err, c.Stats().State)
			}
			// The breaker closes at the first call that probes; a read
			// L1 answers sends none, so read keys L1 does not have.
			n := 0
			eventually(t, 5*time.Second, func() bool {
				n++
				_, _ = c.GetOrLoad(ctx, fmt.Sprint("after", n), load)
				return c.Stats().State == StateConnected
			}, "state connected again")
			if err := c.Set(ctx, "healed", "v"); err != nil {
				t.Fatalf("Set after healing: %v", err)
			}
			eventually(t, 2*time.Second, func() bool {
				v, err := c.Get(ctx, "healed")
				return err == nil && v == "v" && l1Holds(c, "healed", "v")
			}, "L1 serves again")
		})
	}
}

// TestMaxConcurrentLoads: with Redis down every read is a miss; the bound
// keeps the loader calls running at once at MaxConcurrentLoads, and every
// caller still gets its value.
func TestMaxConcurrentLoads(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, func(o *Options) { o.MaxConcurrentLoads = 2 })
	s.Mini().Close() // Redis is gone
	ctx := context.Background()
	var running, peak atomic.Int64
	release := make(chan struct{})
	load := func(_ context.Context, k string) (string, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return "v" + k, nil
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			v, err := c.GetOrLoad(ctx, fmt.Sprint(i), load)
			if err == nil && v != fmt.Sprint("v", i) {
				err = fmt.Errorf("GetOrLoad(%d) = %q", i, v)
			}
			errs <- err
		}()
	}
	eventually(t, 5*time.Second, func() bool { return running.Load() == 2 }, "two loads running")
	close(release)
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrent loader calls = %d, want 2", p)
	}
}

// TestReplyCutMidway: a connection reset in the middle of a reply costs
// that read a second try (go-redis retries it) or a trip to the loader,
// nothing worse, and the next read works. The cache's bus has a client of
// its own, so the cut hits the read's reply and nothing else.
func TestReplyCutMidway(t *testing.T) {
	s := redistest.Real(t)
	// Uncompressed, so the reply is far longer than the 100 bytes let
	// through.
	c, p := proxied(t, s, func(o *Options) { o.DisableCompression = true })
	ctx := context.Background()
	big := strings.Repeat("x", 64<<10)
	if err := c.Set(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	accepted := p.Accepted()
	p.ResetMidReply(100)
	v, err := c.GetOrLoad(ctx, "big", func(context.Context, string) (string, error) { return "db", nil })
	if err != nil || (v != "db" && v != big) {
		t.Fatalf("GetOrLoad with its reply cut = %d bytes, %v; want the loader's or the stored value", len(v), err)
	}
	if p.Accepted() == accepted {
		t.Fatal("the cut did not hit the read: no new connection was made after it")
	}
	if v, err := c.Get(ctx, "big"); err != nil || v != big {
		t.Errorf("Get after the cut = %d bytes, %v; want the stored value", len(v), err)
	}
}

// TestStaleIfError: with Redis blackholed, a cache with StaleIfError serves
// what its L1 held before the outage, but only for StaleIfError after the
// fill; without it (the default) it serves nothing unproven and calls the
// loader.
func TestStaleIfError(t *testing.T) {
	for _, staleFor := range []time.Duration{0, 3 * time.Second} {
		t.Run(fmt.Sprint("StaleIfError=", staleFor), func(t *testing.T) {
			s := redistest.Real(t)
			c, p := outageNode(t, s, func(*faultproxy.Proxy) {}, func(o *Options) { o.StaleIfError = staleFor })
			waitUsable(t, c)
			ctx := context.Background()
			if err := c.Set(ctx, "k", "cached"); err != nil {
				t.Fatal(err)
			}
			eventually(t, 2*time.Second, func() bool {
				v, err := c.Get(ctx, "k")
				return err == nil && v == "cached" && l1Holds(c, "k", "cached")
			}, "L1 holds k")
			filled := time.Now()

			p.Blackhole(true)
			load := func(context.Context, string) (string, error) { return "db", nil }
			for i := 0; c.Stats().State != StateDegraded; i++ {
				if i == 50 {
					t.Fatal("breaker did not open")
				}
				_, _ = c.GetOrLoad(ctx, fmt.Sprint("miss", i), load)
			}
			// Until its heartbeat is overdue the bus still proves L1 fresh,
			// and L1 serves as usual; wait for that proof to run out.
			eventually(t, 3*time.Second, func() bool { return !c.bus.Usable() }, "bus unusable")
			v, err := c.GetOrLoad(ctx, "k", load)
			switch {
			case err != nil:
				t.Fatalf("GetOrLoad(k) during the outage: %v", err)
			case staleFor == 0 && v != "db":
				t.Errorf("GetOrLoad(k) with StaleIfError off = %q, want the loader's value", v)
			case staleFor > 0 && time.Since(filled) >= staleFor:
				t.Fatalf("the breaker took %v to open; StaleIfError %v is too short for this test", time.Since(filled), staleFor)
			case staleFor > 0 && v != "cached":
				t.Errorf("GetOrLoad(k) %v after the fill, StaleIfError %v = %q, want the L1 value", time.Since(filled), staleFor, v)
			}
			if staleFor == 0 {
				if n := c.Stats().StaleServed; n != 0 {
					t.Errorf("StaleServed = %d with StaleIfError off", n)
				}
				return
			}
			if n := c.Stats().StaleServed; n == 0 {
				t.Error("StaleServed = 0 after serving k stale")
			}
			// A read L1 cannot answer, stale or not, is no L1 hit: it is
			// counted in L1Bypassed. (Each stale miss counted as a hit.)
			before := c.Stats()
			if v, err := c.GetOrLoad(ctx, "never-cached", load); err != nil || v != "db" {
				t.Fatalf("GetOrLoad(never-cached) during the outage = %q, %v; want the loader's value", v, err)
			}
			if after := c.Stats(); after.L1.Hits != before.L1.Hits || after.L1Bypassed == before.L1Bypassed {
				t.Errorf("a read L1 could not answer moved L1.Hits from %d to %d and L1Bypassed from %d to %d; want Hits unchanged, L1Bypassed up",
					before.L1.Hits, after.L1.Hits, before.L1Bypassed, after.L1Bypassed)
			}
			// Past StaleIfError (plus the coarse clock's tick) the entry is
			// no longer served: the property is about elapsed time.
			time.Sleep(time.Until(filled.Add(staleFor + 50*time.Millisecond)))
			if v, err := c.GetOrLoad(ctx, "k", load); err != nil || v != "db" {
				t.Errorf("GetOrLoad(k) past StaleIfError = %q, %v; want the loader's value", v, err)
			}
		})
	}
}

// TestWarnsWithoutContextTimeout: a client on which RedisTimeout cannot
// bound a call gets one warning at New; one that honours it gets none.
func TestWarnsWithoutContextTimeout(t *testing.T) {
	s := redistest.Mini(t)
	for _, enabled := range []bool{false, true} {
		var buf syncBuffer
		ro := s.Options()
		ro.ContextTimeoutEnabled = enabled
		rdb := redis.NewClient(ro)
		t.Cleanup(func() { _ = rdb.Close() })
		c, err := New[string](Options{Redis: rdb, Namespace: "w", RedisTimeout: 100 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if got := strings.Contains(buf.String(), "ContextTimeoutEnabled"); got == enabled {
			t.Errorf("ContextTimeoutEnabled=%v: warned = %v, want %v; log: %s", enabled, got, !enabled, buf.String())
		}
	}
}

// TestBreakerStateLogged: the breaker's opening and closing each reach the
// Logger, as state changes, not once per failed read.
func TestBreakerStateLogged(t *testing.T) {
	s := redistest.Real(t)
	var buf syncBuffer
	c, p := outageNode(t, s, func(p *faultproxy.Proxy) { p.Refuse(true) },
		func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&buf, nil)) })
	ctx := context.Background()
	load := func(context.Context, string) (string, error) { return "db", nil }
	for i := 0; c.Stats().State != StateDegraded; i++ {
		if i == 50 {
			t.Fatal("breaker did not open")
		}
		_, _ = c.GetOrLoad(ctx, fmt.Sprint("k", i), load)
	}
	for i := range 20 {
		_, _ = c.GetOrLoad(ctx, fmt.Sprint("more", i), load)
	}
	p.Refuse(false)
	n := 0
	eventually(t, 5*time.Second, func() bool {
		n++
		_, _ = c.GetOrLoad(ctx, fmt.Sprint("after", n), load)
		return c.Stats().State != StateDegraded
	}, "breaker closed")
	// Twenty more failed reads added no record. (The close may come within
	// the open record's second; it is then counted in the next record, not
	// logged, so it is not checked here.)
	log := buf.String()
	if got := strings.Count(log, "circuit breaker open"); got != 1 {
		t.Errorf("log has %d breaker-open records, want 1:\n%s", got, log)
	}
}
