package tiered

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// BenchmarkOutage measures one Redis outage end to end, as issue 9 asks:
// 4 nodes, each behind its own fault proxy, read 1,000 Zipf-distributed
// keys at a paced 400 reads/s per node through GetOrLoad, with a loader
// that costs 1 ms. After warmup every proxy blackholes Redis for 5 s (it
// accepts and never answers), then passes again. It reports read latency
// (p50, p99, max) before, during and after the outage, the time from the
// fault until every node's breaker is open, the time from recovery until
// every node serves L1 hits again, and loader calls per second during the
// outage. It runs with the client a new user builds (client=default: an
// address and nothing else) and with ContextTimeoutEnabled and no retries
// (client=ctxtimeout). Run it once:
//
//	go test -run '^$' -bench Outage -benchtime 1x ./tiered
func BenchmarkOutage(b *testing.B) {
	for _, def := range []bool{true, false} {
		name := "client=ctxtimeout"
		if def {
			name = "client=default"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				runOutage(b, def)
			}
		})
	}
}

const (
	outageNodes    = 4
	outageKeys     = 1000
	outageRate     = 400 // reads per second per node
	outageLoadCost = time.Millisecond
	outageWarm     = 3 * time.Second
	outageFor      = 5 * time.Second
	outageAfter    = 5 * time.Second
)

type outageRead struct {
	at, lat time.Duration // since the start; latency
}

func runOutage(b *testing.B, defaultClient bool) {
	s := redistest.Real(b)
	var caches []*Cache[string]
	var proxies []*faultproxy.Proxy
	for range outageNodes {
		p, err := faultproxy.Start(s.Addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = p.Close() })
		ro := &redis.Options{Addr: p.Addr()}
		if !defaultClient {
			ro.ContextTimeoutEnabled, ro.MaxRetries = true, -1
		}
		rdb := redis.NewClient(ro)
		b.Cleanup(func() { _ = rdb.Close() })
		c, err := New[string](Options{Redis: rdb, Namespace: "outage"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		caches, proxies = append(caches, c), append(proxies, p)
	}
	for _, c := range caches {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.WaitReady(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	var loads atomic.Int64
	load := func(_ context.Context, key string) (string, error) {
		loads.Add(1)
		time.Sleep(outageLoadCost) // the simulated database query
		return "v" + key, nil
	}

	start := time.Now()
	end := start.Add(outageWarm + outageFor + outageAfter)
	var mu sync.Mutex
	var reads []outageRead
	var wg sync.WaitGroup
	for n, c := range caches {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(n), 7))
			z := rand.NewZipf(r, 1.1, 1, outageKeys-1)
			tick := time.NewTicker(time.Second / outageRate)
			defer tick.Stop()
			var local []outageRead
			for now := range tick.C {
				if now.After(end) {
					break
				}
				key := fmt.Sprint(z.Uint64())
				t0 := time.Now()
				if _, err := c.GetOrLoad(context.Background(), key, load); err != nil {
					b.Errorf("GetOrLoad: %v", err)
					return
				}
				local = append(local, outageRead{at: t0.Sub(start), lat: time.Since(t0)})
			}
			mu.Lock()
			reads = append(reads, local...)
			mu.Unlock()
		})
	}

	// The fault and its end, and the two times to measure, by polling every
	// node's Stats every millisecond: nothing signals a breaker opening.
	sleepUntil(start.Add(outageWarm))
	faultAt := time.Now()
	for _, p := range proxies {
		p.Blackhole(true)
	}
	loadsAtFault := loads.Load()
	fastAt := pollAll(caches, faultAt.Add(outageFor), func(c *Cache[string]) bool { return c.Stats().State == StateDegraded })
	sleepUntil(faultAt.Add(outageFor))
	loadsInOutage := loads.Load() - loadsAtFault
	for _, p := range proxies {
		p.Blackhole(false)
	}
	healAt := time.Now()
	hits := make([]uint64, len(caches))
	for i, c := range caches {
		hits[i] = c.Stats().L1.Hits
	}
	healedAt := pollAll(caches, end, func(c *Cache[string]) bool {
		return c.Stats().State == StateConnected && c.Stats().L1.Hits > hits[slices.Index(caches, c)]
	})
	wg.Wait()

	phase := func(from, to time.Duration) []time.Duration {
		var lats []time.Duration
		for _, r := range reads {
			if r.at >= from && r.at < to {
				lats = append(lats, r.lat)
			}
		}
		slices.Sort(lats)
		return lats
	}
	f, h := faultAt.Sub(start), healAt.Sub(start)
	report := func(name, unit string, lats []time.Duration) {
		if len(lats) == 0 {
			b.Logf("%-28s no reads", name)
			return
		}
		p := func(q float64) time.Duration { return lats[int(q*float64(len(lats)-1))] }
		b.Logf("%-28s reads %6d  p50 %9v  p99 %9v  max %9v", name, len(lats), p(0.5), p(0.99), lats[len(lats)-1])
		b.ReportMetric(float64(p(0.99).Microseconds()), unit+"-p99-us")
	}
	b.Logf("4 nodes, %d reads/s each, loader %v, Redis blackholed %v", outageRate, outageLoadCost, outageFor)
	report("before", "before", phase(0, f))
	report("outage, breaker opening", "opening", phase(f, fastAt.Sub(start)))
	report("outage, breaker open", "open", phase(fastAt.Sub(start), h))
	report("after", "after", phase(h, end.Sub(start)+time.Second))
	b.Logf("fault to every breaker open: %v; recovery to L1 hits on every node: %v; loader calls/s during the outage: %.0f",
		fastAt.Sub(faultAt).Round(time.Millisecond), healedAt.Sub(healAt).Round(time.Millisecond),
		float64(loadsInOutage)/outageFor.Seconds())
	b.ReportMetric(float64(fastAt.Sub(faultAt).Milliseconds()), "fast-failure-ms")
	b.ReportMetric(float64(healedAt.Sub(healAt).Milliseconds()), "heal-ms")
	b.ReportMetric(float64(loadsInOutage)/outageFor.Seconds(), "outage-loads/s")
}

// sleepUntil waits until t; the scenario's phases are lengths of time.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// pollAll returns when cond holds for every cache, or at deadline.
func pollAll(cs []*Cache[string], deadline time.Time, cond func(*Cache[string]) bool) time.Time {
	done := make([]bool, len(cs))
	for {
		all := true
		for i, c := range cs {
			if !done[i] {
				done[i] = cond(c)
			}
			all = all && done[i]
		}
		now := time.Now()
		if all || now.After(deadline) {
			return now
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}
