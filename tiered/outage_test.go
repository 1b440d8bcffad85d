package tiered

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
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

// TestWarnsOnRetriedWrites: a client that resends a command whose reply
// timed out before RedisTimeout gets one warning at New (a write's first
// attempt could land after a newer one); one that waits longer, or never
// resends, gets none. A client without ContextTimeoutEnabled gets none
// either: the cache stops waiting for its calls at RedisTimeout.
func TestWarnsOnRetriedWrites(t *testing.T) {
	s := redistest.Mini(t)
	tests := []struct {
		name    string
		read    time.Duration
		retries int
		want    bool
	}{
		{"short read timeout, retries", 50 * time.Millisecond, 3, true},
		{"short read timeout, no retries", 50 * time.Millisecond, -1, false},
		{"the default client", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			ro := s.Options()
			ro.ReadTimeout, ro.MaxRetries = tt.read, tt.retries
			rdb := redis.NewClient(ro)
			t.Cleanup(func() { _ = rdb.Close() })
			c, err := New[string](Options{Redis: rdb, Namespace: "w", RedisTimeout: 100 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(&buf, nil))})
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			if got := strings.Contains(buf.String(), "ReadTimeout"); got != tt.want {
				t.Errorf("warned = %v, want %v; log: %s", got, tt.want, buf.String())
			}
		})
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

// TestDefaultClientFailsFast: promise 5 with the clients a new user builds,
// each with only addresses (no ContextTimeoutEnabled, ReadTimeout 3s,
// MaxRetries 3): standalone, Cluster and Sentinel, with every server they
// use frozen (SIGSTOP: connections stay open, nothing is answered, as in a
// blackhole). A second into the fault, reads cost about the loader and a
// write fails with ErrUnavailable at once; the cache heals by itself when
// Redis answers again. No call stuck in go-redis holds a caller. The
// figures are logged; only gross bounds are asserted (speed belongs in
// benchmarks).
func TestDefaultClientFailsFast(t *testing.T) {
	type setup struct {
		rdb     redis.UniversalClient
		servers []*redistest.Server
	}
	tests := []struct {
		name string
		make func(t *testing.T) setup
	}{
		{"standalone", func(t *testing.T) setup {
			s := redistest.Real(t)
			rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
			t.Cleanup(func() { _ = rdb.Close() })
			return setup{rdb, []*redistest.Server{s}}
		}},
		{"cluster", func(t *testing.T) setup {
			cl := redistest.NewCluster(t)
			rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs})
			t.Cleanup(func() { _ = rdb.Close() })
			var servers []*redistest.Server
			for _, a := range cl.Addrs {
				servers = append(servers, cl.Node(t, a))
			}
			return setup{rdb, servers}
		}},
		{"sentinel", func(t *testing.T) setup {
			sn := redistest.NewSentinel(t)
			rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: []string{sn.Addr}})
			t.Cleanup(func() { _ = rdb.Close() })
			return setup{rdb, []*redistest.Server{sn.Master}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			su := tt.make(t)
			defaultClientOutage(t, su.rdb, su.servers)
		})
	}
}

func defaultClientOutage(t *testing.T, rdb redis.UniversalClient, servers []*redistest.Server) {
	c, err := New[string](Options{Redis: rdb, Namespace: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	ready, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ready); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	const loaderCost = time.Millisecond
	load := func(_ context.Context, k string) (string, error) {
		time.Sleep(loaderCost) // the loader's cost, not synchronization
		return "db-" + k, nil
	}
	before, beforeConns := runtime.NumGoroutine(), rdb.PoolStats().TotalConns
	paused := false
	for _, s := range servers {
		s.Pause(t)
	}
	paused = true
	t.Cleanup(func() { // a failed check must not leave the servers frozen for the cleanups
		if paused {
			for _, s := range servers {
				s.Resume(t)
			}
		}
	})
	fault := time.Now()
	var late []time.Duration
	var slowest time.Duration
	fast := time.Duration(-1) // from the fault to the first of the reads that cost about the loader
	peak, peakConns := 0, uint32(0)
	for i := 0; time.Since(fault) < 1500*time.Millisecond; i++ {
		start := time.Now()
		if v, err := c.GetOrLoad(ctx, fmt.Sprint("k", i), load); err != nil || v != fmt.Sprint("db-k", i) {
			t.Fatalf("GetOrLoad during the fault = %q, %v", v, err)
		}
		d := time.Since(start)
		slowest = max(slowest, d)
		if d > loaderCost+2*time.Millisecond {
			fast = -1
		} else if fast < 0 {
			fast = start.Sub(fault)
		}
		if start.Sub(fault) > time.Second {
			late = append(late, d)
		}
		peak = max(peak, runtime.NumGoroutine())
		peakConns = max(peakConns, rdb.PoolStats().TotalConns)
	}
	slices.Sort(late)
	if len(late) == 0 {
		t.Fatal("no read ran a second into the fault")
	}
	p50, p99 := late[len(late)/2], late[len(late)*99/100]
	start := time.Now()
	werr := c.Set(ctx, "k", "v1")
	failWrite := time.Since(start)
	st := c.Stats().L2
	t.Logf("fault to reads at loader speed: %v; reads 1s-1.5s into the fault: %d, p50 %v, p99 %v, slowest read overall %v (loader %v); Set failed in %v with %v",
		fast.Round(time.Millisecond), len(late), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), slowest.Round(time.Millisecond), loaderCost, failWrite.Round(time.Microsecond), werr)
	t.Logf("goroutines: %d before the fault, %d at the peak; pooled connections: %d before, %d at the peak; calls abandoned %d, still running in the client %d",
		before, peak, beforeConns, peakConns, st.Abandoned, st.AbandonedRunning)
	if p99 > 50*time.Millisecond || slowest > time.Second {
		t.Errorf("reads were held by calls stuck in go-redis: p99 %v a second into the fault, slowest %v", p99, slowest)
	}
	if !errors.Is(werr, ErrUnavailable) || failWrite > 100*time.Millisecond {
		t.Errorf("Set a second into the fault = %v after %v, want ErrUnavailable at once", werr, failWrite)
	}
	if st.Abandoned == 0 {
		t.Errorf("Stats().L2.Abandoned = 0: the calls stuck in go-redis were not abandoned: %+v", st)
	}
	for _, s := range servers {
		s.Resume(t)
	}
	paused = false
	healed := time.Now()
	eventually(t, 20*time.Second, func() bool {
		_, _ = c.GetOrLoad(ctx, "probe", load)
		return c.Stats().State == StateConnected && c.Set(ctx, "healed", "v") == nil
	}, "the cache heals")
	heal := time.Since(healed)
	eventually(t, 20*time.Second, func() bool { return c.Stats().L2.AbandonedRunning == 0 }, "the abandoned calls end")
	t.Logf("heal to connected and writable: %v after Redis answered; abandoned calls all ended %v after; goroutines now %d, pooled connections %d",
		heal.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond), runtime.NumGoroutine(), rdb.PoolStats().TotalConns)
}
