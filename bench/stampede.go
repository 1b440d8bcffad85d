package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The stampede scenario: a key nobody has cached is read at the same
// moment by stampedeGoroutines goroutines on each of Config.Nodes nodes,
// through the system's cache-aside call, with a loader that costs
// stampedeLoadCost. It reports how many times the loader ran and when the
// first and the last reader had the value.
const (
	stampedeGoroutines = 20
	stampedeLoadCost   = 50 * time.Millisecond
	stampedeTrials     = 3
)

type stampedeTrial struct {
	loads       int64
	first, last time.Duration
	errors      int64
}

func runStampede(ctx context.Context, r *runner, sys system, key string) (stampedeTrial, error) {
	var res stampedeTrial
	nodes, err := newNodes(r.c.Nodes, func(int) (node, error) { return sys.newNode(r.addr, nodeOptions{prefix: "stampede"}) })
	if err != nil {
		return res, err
	}
	defer closeAll(nodes)
	var loads atomic.Int64
	load := simulatedQuery(stampedeLoadCost, func(string) { loads.Add(1) })
	release := make(chan struct{})
	var ready, wg sync.WaitGroup
	var mu sync.Mutex
	var done []time.Duration
	var t0 time.Time
	for _, n := range nodes {
		for range stampedeGoroutines {
			ready.Add(1)
			wg.Go(func() {
				ready.Done()
				<-release
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := n.getOrLoad(rctx, key, load)
				cancel()
				at := time.Since(t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					res.errors++
					return
				}
				done = append(done, at)
			})
		}
	}
	ready.Wait()
	t0 = time.Now()
	close(release)
	wg.Wait()
	res.loads = loads.Load()
	if len(done) > 0 {
		slices.Sort(done)
		res.first, res.last = done[0], done[len(done)-1]
	}
	return res, ctx.Err()
}

func stampedeSection(ctx context.Context, r *runner) (*Section, error) {
	readers := r.c.Nodes * stampedeGoroutines
	s := &Section{Name: "stampede",
		Title: fmt.Sprintf("3. Cold-key stampede: %d nodes × %d goroutines read one uncached key at once (loader %v; %d trials)",
			r.c.Nodes, stampedeGoroutines, stampedeLoadCost, stampedeTrials),
		Columns: []Column{
			{"loads", "loader calls (mean)", UnitCount},
			{"loads_max", "loader calls (max)", UnitCount},
			{"first", "first value (median)", UnitNs},
			{"last", "last value (median)", UnitNs},
			{"errors", "errors", UnitCount},
		},
		Notes: []string{fmt.Sprintf("%d readers in all; one loader call per stampede is the ideal. Times run from the release of all readers to each one's value.", readers)},
		Charts: []Chart{
			{Title: "Loader calls per stampede (lower is better)", Keys: []string{"loads"}, Labels: []string{"mean loader calls"}, Unit: UnitCount, Log: true},
			{Title: "Time to the last reader's value (lower is better)", Keys: []string{"first", "last"}, Labels: []string{"first", "last"}, Unit: UnitNs},
		},
	}
	for _, sys := range systems() {
		r.progress("stampede", sys.name)
		if why := r.skip(sys); why != "" {
			s.skip(sys.name, "", why)
			continue
		}
		if err := r.flush(ctx); err != nil {
			return nil, err
		}
		var trials []stampedeTrial
		var failed error
		for i := range stampedeTrials {
			t, err := runStampede(ctx, r, sys, fmt.Sprintf("cold-%d", i))
			if err != nil {
				failed = err
				break
			}
			trials = append(trials, t)
		}
		if failed != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.skip(sys.name, "", "adapter failed: "+failed.Error())
			continue
		}
		var loads, loadsMax, errs float64
		var firsts, lasts []time.Duration
		for _, t := range trials {
			loads += float64(t.loads) / float64(len(trials))
			loadsMax = max(loadsMax, float64(t.loads))
			errs += float64(t.errors)
			firsts, lasts = append(firsts, t.first), append(lasts, t.last)
		}
		slices.Sort(firsts)
		slices.Sort(lasts)
		s.add(Row{System: sys.name, Note: sys.note, Values: map[string]float64{
			"loads": loads, "loads_max": loadsMax, "errors": errs,
			"first": float64(percentile(firsts, 50)), "last": float64(percentile(lasts, 50)),
		}})
	}
	return s, nil
}
