package metrics_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// scrapeEvery paces the scraping goroutine of BenchmarkHit: 1000 scrapes a
// second, 15,000 times Prometheus's default rate. It does not scrape back
// to back because that measures CPU contention, not metrics: on a 2-vCPU
// machine a goroutine that only spins slows the hit about as much, and so
// does scraping a registry that holds none of our collectors.
const scrapeEvery = time.Millisecond

// BenchmarkHit measures an L1 hit with metrics off and on. On, both
// collectors are registered and a goroutine scrapes the registry in a loop
// (every scrapeEvery) for the whole run. Compare with benchstat:
//
//	go test -run '^$' -bench Hit -count 10 ./metrics/ | tee hit.txt
//	benchstat -col /metrics hit.txt
func BenchmarkHit(b *testing.B) {
	s := redistest.Mini(b)
	c, err := tiered.New[string](tiered.Options{Redis: s.Client(b), Namespace: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	eventually(b, "bus usable", c.Bus().Usable)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		b.Fatal(err)
	}
	eventually(b, "L1 serves k", func() bool {
		before := c.Stats().L1.Hits
		if _, err := c.Get(ctx, "k"); err != nil {
			b.Fatal(err)
		}
		return c.Stats().L1.Hits > before
	})

	hits := func(b *testing.B) {
		before := c.Stats().L1.Hits
		for b.Loop() {
			if _, err := c.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
		if got := c.Stats().L1.Hits - before; got != uint64(b.N) {
			b.Fatalf("%d L1 hits in %d Gets: not every Get was an L1 hit", got, b.N)
		}
	}

	b.Run("metrics=off", hits)
	b.Run("metrics=on", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics.NewCacheCollector(c, metrics.Options{}), metrics.NewBusCollector(c.Bus(), metrics.Options{}))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var scrapes int
		wg.Go(func() {
			tick := time.NewTicker(scrapeEvery)
			defer tick.Stop()
			for {
				if _, err := reg.Gather(); err != nil {
					b.Error(err)
					return
				}
				scrapes++
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
		hits(b)
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(scrapes)/b.Elapsed().Seconds(), "scrapes/s")
	})
}
