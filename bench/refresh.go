package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// The refresh scenario: hot keys expiring under load. RefreshNodes nodes
// of one system read RefreshKeys Zipf keys, paced at RefreshRate reads per
// second per node, through the system's cache-aside call, with a loader
// that costs RefreshLoadCost and values that live RefreshTTL. A read
// "waited for a load" when it took longer than RefreshWaited: an L1 hit
// takes microseconds, an L2 hit well under a millisecond on loopback.
const (
	RefreshNodes    = 4
	RefreshKeys     = 10_000
	RefreshRate     = 400 // reads per second per node
	RefreshReaders  = 4   // goroutines per node sharing its rate
	RefreshTTL      = 2 * time.Second
	RefreshLoadCost = 5 * time.Millisecond
	RefreshWaited   = 4 * time.Millisecond
	// RefreshHot is how many of the most popular keys count as hot: with
	// these rates each is read at least twice per second on every node,
	// so several times within any refresh window; that is where refreshing
	// ahead can help (keys read less often than once per window simply
	// expire, by design).
	RefreshHot = 20
)

// refreshSystems are the systems with a feature for expiring hot keys:
// tiercache's variants and sturdyc's early refreshes.
func refreshSystems() []system {
	o := nodeOptions{ttl: RefreshTTL, prefix: "refresh"}
	tc := func(mod func(*tiered.Options)) func(string, nodeOptions) (node, error) {
		return func(addr string, _ nodeOptions) (node, error) { return newTiercacheWith(addr, o, mod) }
	}
	return []system{
		{name: "tiercache, no expiry (L1-hit floor)", newNode: tc(func(o *tiered.Options) { o.TTL = time.Hour }),
			note: "TTL 1h: after warmup every hot read is an L1 hit; the p99 the others aim at"},
		{name: "tiercache", newNode: tc(nil), note: "GetOrLoad, TTL 2s, refresh off"},
		{name: "tiercache refresh-ahead", newNode: tc(func(o *tiered.Options) { o.RefreshAhead = time.Second }),
			note: "RefreshAhead 1s"},
		{name: "tiercache refresh-ahead + SWR", newNode: tc(func(o *tiered.Options) {
			o.RefreshAhead = time.Second
			o.StaleWhileRevalidate = time.Second
		}), note: "RefreshAhead 1s, StaleWhileRevalidate 1s"},
		{name: "sturdyc", newNode: func(addr string, _ nodeOptions) (node, error) {
			return newSturdycWith(addr, o, RefreshTTL, time.Second)
		}, note: "WithEarlyRefreshes(1s, 1.5s, sync 2s, retry 10ms) + WithDistributedStorageEarlyRefreshes(go-redis, 1s), TTL 2s"},
	}
}

// refreshResult is one system's run.
type refreshResult struct {
	lat, hotLat    []time.Duration // sorted read latencies after warmup: all keys, hot keys
	waited         int             // reads slower than RefreshWaited
	hotWaited      int
	loadsPerSec    float64
	hotLoadsPerSec float64 // loader calls for hot keys
	errors         int64
}

// runRefresh runs the scenario for sys: warmFor of reads not measured
// (every key's first load), then measureFor measured.
func runRefresh(ctx context.Context, sys system, addr string, warmFor, measureFor time.Duration) (refreshResult, error) {
	var res refreshResult
	nodes, err := newNodes(RefreshNodes, func(int) (node, error) { return sys.newNode(addr, nodeOptions{}) })
	if err != nil {
		return res, fmt.Errorf("%s: %w", sys.name, err)
	}
	defer closeAll(nodes)
	var loads, hotLoads atomic.Int64
	hot := make(map[string]bool, RefreshHot)
	for k := range RefreshHot {
		hot[fmt.Sprint(k)] = true
	}
	load := simulatedQuery(RefreshLoadCost, func(key string) {
		loads.Add(1)
		if hot[key] {
			hotLoads.Add(1)
		}
	})
	measureAt := time.Now().Add(warmFor)
	end := measureAt.Add(measureFor)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, n := range nodes {
		for j := range RefreshReaders {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), uint64(j)))
				z := rand.NewZipf(r, 1.1, 1, RefreshKeys-1)
				tick := time.NewTicker(time.Second * RefreshReaders / RefreshRate)
				defer tick.Stop()
				var mine, mineHot []time.Duration
				for now := range tick.C {
					if now.After(end) || ctx.Err() != nil {
						break
					}
					k := z.Uint64()
					t0 := time.Now()
					rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := n.getOrLoad(rctx, fmt.Sprint(k), load)
					cancel()
					if t0.Before(measureAt) {
						continue
					}
					if err != nil {
						atomic.AddInt64(&res.errors, 1)
					}
					d := time.Since(t0)
					mine = append(mine, d)
					if k < RefreshHot {
						mineHot = append(mineHot, d)
					}
				}
				mu.Lock()
				res.lat = append(res.lat, mine...)
				res.hotLat = append(res.hotLat, mineHot...)
				mu.Unlock()
			})
		}
	}
	sleepCtx(ctx, time.Until(measureAt))
	atMeasure, hotAtMeasure := loads.Load(), hotLoads.Load()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.loadsPerSec = float64(loads.Load()-atMeasure) / measureFor.Seconds()
	res.hotLoadsPerSec = float64(hotLoads.Load()-hotAtMeasure) / measureFor.Seconds()
	slices.Sort(res.lat)
	slices.Sort(res.hotLat)
	for _, d := range res.lat {
		if d > RefreshWaited {
			res.waited++
		}
	}
	for _, d := range res.hotLat {
		if d > RefreshWaited {
			res.hotWaited++
		}
	}
	return res, nil
}

// refreshSection runs the scenario for every system with a refresh
// feature; the others get a row that says so.
func refreshSection(ctx context.Context, r *runner) (*Section, error) {
	s := &Section{Name: "refresh",
		Title: fmt.Sprintf("6. Hot keys expiring (%d nodes per system; %d paced reads/s per node over %d Zipf keys; TTL %v; loader %v; measured %v after %v of warmup)",
			RefreshNodes, RefreshRate, RefreshKeys, RefreshTTL, RefreshLoadCost, r.c.RefreshFor, r.c.RefreshWarm),
		Columns: []Column{
			{"reads", "reads", UnitCount},
			{"p50", "p50", UnitNs}, {"p99", "p99", UnitNs}, {"p999", "p99.9", UnitNs},
			{"waited", "waited for a load", UnitFrac}, {"loads_s", "loader calls/s", UnitCount},
			{"hot_p99", fmt.Sprintf("hot %d: p99", RefreshHot), UnitNs}, {"hot_p999", "hot: p99.9", UnitNs},
			{"hot_waited", "hot: waited", UnitFrac}, {"hot_loads_s", "hot: loader calls/s", UnitCount},
			{"errors", "errors", UnitCount},
		},
		Notes: []string{fmt.Sprintf("A read \"waited for a load\" when it took over %v. The hot keys are the %d most popular, each read several times per refresh window on every node: that is where refreshing ahead can help; keys read less often simply expire.",
			RefreshWaited, RefreshHot)},
		Charts: []Chart{{Title: "Hot-key read latency (lower is better)", Keys: []string{"hot_p99", "hot_p999"}, Labels: []string{"hot p99", "hot p99.9"}, Unit: UnitNs, Log: true}},
	}
	for _, sys := range refreshSystems() {
		r.progress("refresh", sys.name)
		if err := r.flush(ctx); err != nil {
			return nil, err
		}
		res, err := runRefresh(ctx, sys, r.addr, r.c.RefreshWarm, r.c.RefreshFor)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.skip(sys.name, "", "adapter failed: "+err.Error())
			continue
		}
		frac := func(n int, of []time.Duration) float64 { return float64(n) / float64(max(len(of), 1)) }
		v := map[string]float64{"reads": float64(len(res.lat)), "waited": frac(res.waited, res.lat), "loads_s": res.loadsPerSec,
			"hot_waited": frac(res.hotWaited, res.hotLat), "hot_loads_s": res.hotLoadsPerSec, "errors": float64(res.errors)}
		latencies(v, "", res.lat)
		latencies(v, "hot_", res.hotLat)
		s.add(Row{System: sys.name, Values: v, Note: sys.note})
	}
	for _, sys := range systems() {
		if sys.name != sysTiercache && sys.name != "sturdyc" {
			s.skip(sys.name, "", "not run: no refresh-ahead or stale-while-revalidate feature to compare")
		}
	}
	return s, nil
}
