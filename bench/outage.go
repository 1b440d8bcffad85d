package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/faultproxy"
)

// The outage scenario: OutageNodes nodes of one library, each reaching
// Redis through its own fault proxy, read OutageKeys Zipf keys at a paced
// rate through the library's cache-aside call with a loader that costs
// OutageLoadCost. After a warmup every proxy blackholes Redis (accepts,
// never answers) for the outage, then passes again.
const (
	OutageNodes    = 4
	OutageKeys     = 1000
	OutageRate     = 400 // reads per second per node
	OutageLoadCost = time.Millisecond
)

// outageRead is one timed read.
type outageRead struct{ at, lat time.Duration } // since the fault; latency

// outageResult is one library's run.
type outageResult struct {
	before, during, after []time.Duration // sorted latencies
	fastFailure           time.Duration   // fault to the first 100ms window with p99 under the loader's cost + 2ms; -1: never
	localAgain            time.Duration   // recovery to the first 100ms window with median under 100us; -1: never
	loadsPerSec           float64         // loader calls per second during the outage
	errors                int64
}

// runOutage runs the scenario for lib against the Redis at addr.
func runOutage(ctx context.Context, sys system, addr string, warmFor, outageFor, afterFor time.Duration) (outageResult, error) {
	var res outageResult
	proxies := make([]*faultproxy.Proxy, 0, OutageNodes)
	defer func() {
		for _, p := range proxies {
			_ = p.Close()
		}
	}()
	for range OutageNodes {
		p, err := faultproxy.Start(addr)
		if err != nil {
			return res, err
		}
		proxies = append(proxies, p)
	}
	nodes, err := newNodes(OutageNodes, func(i int) (node, error) { return sys.newNode(proxies[i].Addr(), nodeOptions{prefix: "outage"}) })
	if err != nil {
		return res, fmt.Errorf("%s: %w", sys.name, err)
	}
	// Deferred after the proxies' Close, so it runs first: nodes close
	// while their proxies still pass.
	defer closeAll(nodes)
	var loads atomic.Int64
	load := simulatedQuery(OutageLoadCost, func(string) { loads.Add(1) })
	start := time.Now()
	faultAt := start.Add(warmFor)
	healAt := faultAt.Add(outageFor)
	end := healAt.Add(afterFor)
	var mu sync.Mutex
	var reads []outageRead
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 11))
			z := rand.NewZipf(r, 1.1, 1, OutageKeys-1)
			tick := time.NewTicker(time.Second / OutageRate)
			defer tick.Stop()
			var mine []outageRead
			for now := range tick.C {
				if now.After(end) || ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				// A read may wait out the whole outage, not longer.
				rctx, cancel := context.WithTimeout(ctx, outageFor)
				_, err := n.getOrLoad(rctx, fmt.Sprint(z.Uint64()), load)
				cancel()
				if err != nil {
					atomic.AddInt64(&res.errors, 1)
				}
				mine = append(mine, outageRead{at: t0.Sub(faultAt), lat: time.Since(t0)})
			}
			mu.Lock()
			reads = append(reads, mine...)
			mu.Unlock()
		})
	}
	sleepCtx(ctx, time.Until(faultAt))
	for _, p := range proxies {
		p.Blackhole(true)
	}
	atFault := loads.Load()
	sleepCtx(ctx, time.Until(healAt))
	res.loadsPerSec = float64(loads.Load()-atFault) / outageFor.Seconds()
	for _, p := range proxies {
		p.Blackhole(false)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}

	heal := healAt.Sub(faultAt)
	for _, r := range reads {
		switch {
		case r.at < 0:
			res.before = append(res.before, r.lat)
		case r.at < heal:
			res.during = append(res.during, r.lat)
		default:
			res.after = append(res.after, r.lat)
		}
	}
	for _, s := range [][]time.Duration{res.before, res.during, res.after} {
		slices.Sort(s)
	}
	slices.SortFunc(reads, func(a, b outageRead) int { return int(a.at - b.at) })
	res.fastFailure = firstWindow(reads, 0, heal, func(w []time.Duration) bool {
		return percentile(w, 99) < OutageLoadCost+2*time.Millisecond
	})
	res.localAgain = firstWindow(reads, heal, end.Sub(faultAt), func(w []time.Duration) bool {
		return percentile(w, 50) < 100*time.Microsecond
	})
	if res.localAgain >= 0 {
		res.localAgain -= heal
	}
	return res, nil
}

// firstWindow returns the start of the first 100ms window of reads, from
// from to to, whose sorted latencies satisfy ok, or -1.
func firstWindow(reads []outageRead, from, to time.Duration, ok func([]time.Duration) bool) time.Duration {
	const width = 100 * time.Millisecond
	for at := from; at+width <= to; at += 10 * time.Millisecond {
		var w []time.Duration
		for _, r := range reads {
			if r.at >= at && r.at < at+width {
				w = append(w, r.lat)
			}
		}
		if len(w) < 10 {
			continue
		}
		slices.Sort(w)
		if ok(w) {
			return at
		}
	}
	return -1
}

// simulatedQuery is the scenarios' loader: a database query that takes
// cost (or until ctx ends) and returns "v" + key; called sees every call.
func simulatedQuery(cost time.Duration, called func(key string)) func(context.Context, string) (string, error) {
	return func(ctx context.Context, key string) (string, error) {
		called(key)
		t := time.NewTimer(cost)
		defer t.Stop()
		select {
		case <-t.C:
			return "v" + key, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// sleepCtx waits d or until ctx ends: the scenario's phases are lengths of
// time.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// outageSection runs the scenario for every system that uses Redis.
func outageSection(ctx context.Context, r *runner) (*Section, error) {
	c := r.c
	s := &Section{Name: "outage",
		Title: fmt.Sprintf("5. Redis blackholed for %v under paced load (%d nodes per system, each behind its own loopback proxy; %d reads/s per node over %d Zipf keys; loader %v)",
			c.OutageFor, OutageNodes, OutageRate, OutageKeys, OutageLoadCost),
		Columns: []Column{
			{"before_p50", "before p50", UnitNs}, {"before_p99", "before p99", UnitNs},
			{"during_p50", "outage p50", UnitNs}, {"during_p99", "outage p99", UnitNs}, {"during_max", "outage max", UnitNs},
			{"after_p50", "after p50", UnitNs}, {"after_p99", "after p99", UnitNs},
			{"fast_failure", "fault to fast failure", UnitNs}, {"local_again", "heal to local hits", UnitNs},
			{"loads_s", "loader calls/s in outage", UnitCount}, {"errors", "errors", UnitCount},
		},
		Notes: []string{fmt.Sprintf("The proxy accepts connections and never answers (a blackhole, the worst kind of outage) for %v after %v of warmup, then passes again for %v. "+
			"\"fault to fast failure\" is the start of the first 100 ms window after the fault whose p99 is under the loader's cost + 2 ms; \"heal to local hits\" the first window after healing whose median is under 100 µs; \"never\" means not within the phase. "+
			"A read may wait out the whole outage; its error then counts.", c.OutageFor, c.OutageWarm, c.OutageAfter)},
		Charts: []Chart{{Title: "Read latency by phase (lower is better)", Keys: []string{"before_p99", "during_p99", "after_p99"},
			Labels: []string{"before p99", "outage p99", "after p99"}, Unit: UnitNs, Log: true}},
	}
	for _, sys := range systems() {
		r.progress("outage", sys.name)
		if !sys.shared {
			s.skip(sys.name, "", "n/a: no Redis to lose")
			continue
		}
		if why := r.skip(sys); why != "" {
			s.skip(sys.name, "", why)
			continue
		}
		if err := r.flush(ctx); err != nil {
			return nil, err
		}
		res, err := runOutage(ctx, sys, r.addr, c.OutageWarm, c.OutageFor, c.OutageAfter)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.skip(sys.name, "", "adapter failed: "+err.Error())
			continue
		}
		v := map[string]float64{
			"fast_failure": float64(res.fastFailure), "local_again": float64(res.localAgain),
			"loads_s": res.loadsPerSec, "errors": float64(res.errors),
		}
		latencies(v, "before_", res.before)
		latencies(v, "during_", res.during)
		latencies(v, "after_", res.after)
		if len(res.during) > 0 {
			v["during_max"] = float64(res.during[len(res.during)-1])
		}
		if !sys.local {
			delete(v, "local_again")
		}
		s.add(Row{System: sys.name, Values: v, Note: sys.note})
	}
	return s, nil
}
