package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The hot-path scenario: each system's hit latency with its values
// already local, on one goroutine and on GOMAXPROCS goroutines, for one
// key, for 1,024 keys and for 65,536 keys read in random order (so that
// memory latency, not the CPU cache, is what is measured).
var defaultHotKeys = []int{1, 1024, 65536}

const (
	// hotBatch is how many reads run between clock reads, so the clock
	// costs little next to a 50 ns hit.
	hotBatch = 64
	// maxBatches bounds each goroutine's loop by count as well as by time.
	maxBatches = 1 << 30
	// fillWorkers is how many goroutines fill a key set.
	fillWorkers = 16
)

// hotResult is one hot-path case.
type hotResult struct {
	ops, errors int64
	elapsed     time.Duration
	mallocs     uint64
}

func (r hotResult) nsPerOp() float64 {
	if r.ops == 0 {
		return 0
	}
	return float64(r.elapsed.Nanoseconds()) / float64(r.ops)
}

// fill reads keys through n's getOrLoad until each is in n's local tier
// (fills may be asynchronous), in a bounded number of passes. It returns
// the fraction of the second pass served locally, or -1 if n does not say.
func fill(ctx context.Context, n node, sys system, keys []string, value string) (float64, error) {
	pass := func(f func(string) error) error {
		var next atomic.Int64
		errs := make([]error, fillWorkers)
		var wg sync.WaitGroup
		for w := range fillWorkers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(len(keys)); i = next.Add(1) - 1 {
					if err := f(keys[i]); err != nil {
						errs[w] = err
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	// The loader stands in for the database; getOrLoad caches its answer
	// in Redis and locally, as the system does on a miss.
	load := func(context.Context, string) (string, error) { return value, nil }
	read := func(k string) error { _, err := n.getOrLoad(ctx, k, load); return err }
	if b, ok := n.(batchNode); ok && sys.batchFills {
		// The first pass in batches of 512: one round trip or so each.
		bload := func(_ context.Context, ks []string) (map[string]string, error) {
			m := make(map[string]string, len(ks))
			for _, k := range ks {
				m[k] = value
			}
			return m, nil
		}
		for i := 0; i < len(keys); i += 512 {
			if _, err := b.getOrLoadMany(ctx, keys[i:min(i+512, len(keys))], bload); err != nil {
				return 0, fmt.Errorf("batch read: %w", err)
			}
		}
	}
	if err := pass(read); err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if !sys.local {
		return -1, nil
	}
	// Asynchronous fills land within milliseconds: passes until nearly
	// every read is local, or a deadline.
	deadline := time.Now().Add(2 * time.Second)
	for {
		before := n.localHits()
		if err := pass(read); err != nil {
			return 0, fmt.Errorf("read: %w", err)
		}
		if before < 0 {
			return -1, nil
		}
		frac := float64(n.localHits()-before) / float64(len(keys))
		if frac >= 0.99 || !time.Now().Before(deadline) || ctx.Err() != nil {
			return frac, ctx.Err()
		}
	}
}

// measureHot reads keys from n in a tight loop on goroutines goroutines
// for d, in random order when there is more than one, and counts heap
// allocations over the whole run (a system's background goroutines
// included, amortised over every op).
func measureHot(ctx context.Context, n node, keys []string, goroutines int, d time.Duration) hotResult {
	var ops, errs atomic.Int64
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	deadline := start.Add(d)
	mask := uint64(len(keys) - 1) // len(keys) is a power of two
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.NewPCG(uint64(g), 7)
			var mine, bad int64
			for b := 0; b < maxBatches; b++ {
				for range hotBatch {
					if _, err := n.get(ctx, keys[r.Uint64()&mask]); err != nil {
						bad++
					}
				}
				mine += hotBatch
				if !time.Now().Before(deadline) || ctx.Err() != nil {
					break
				}
			}
			ops.Add(mine)
			errs.Add(bad)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return hotResult{ops: ops.Load(), errors: errs.Load(), elapsed: elapsed, mallocs: after.Mallocs - before.Mallocs}
}

func hotCase(keys, goroutines int) string {
	k := "1 key"
	if keys > 1 {
		k = fmt.Sprintf("%d keys", keys)
	}
	return fmt.Sprintf("%s, %d goroutine(s)", k, goroutines)
}

// hotSection runs the scenario for every system.
func hotSection(ctx context.Context, r *runner) (*Section, error) {
	s := &Section{
		Name:  "hot",
		Title: fmt.Sprintf("1. Hot path: hit latency with every key local (%v per case)", r.c.HotFor),
		Columns: []Column{
			{"ns_op", "ns/op", UnitFloat},
			{"vs_ristretto", "vs ristretto", UnitRatio},
			{"allocs_op", "allocs/op", UnitFloat},
			{"ops", "ops", UnitCount},
			{"misses", "misses", UnitCount},
			{"local_after_fill", "local after fill", UnitFrac},
		},
		Notes: []string{
			"ns/op is wall time over all ops, as `testing.B.RunParallel` reports it: with several goroutines it is the inverse of throughput. " +
				"Keys are picked at random (a PCG step per read, the same for every system). allocs/op counts every heap allocation in the process during the case, background goroutines included. " +
				"\"vs ristretto\" divides by raw ristretto's ns/op in the same case of this run. \"misses\" are reads the system did not answer from a key it was given (raw ristretto's admission policy can drop a set).",
		},
		Charts: []Chart{{Title: "Hit latency, ns/op (lower is better)", Keys: []string{"ns_op"}, Unit: UnitFloat, Log: true, ByCase: true}},
	}
	counts := []int{1}
	if p := runtime.GOMAXPROCS(0); p > 1 {
		counts = append(counts, p)
	}
	for _, sys := range systems() {
		r.progress("hot", sys.name)
		n, why, err := r.hotNode(ctx, sys)
		if err != nil {
			return nil, err
		}
		if why != "" {
			for _, k := range r.c.HotKeys {
				for _, g := range counts {
					s.skip(sys.name, hotCase(k, g), why)
				}
			}
			continue
		}
		for _, k := range r.c.HotKeys {
			keys := make([]string, k)
			for i := range keys {
				keys[i] = keyName(i)
			}
			local, err := fill(ctx, n, sys, keys, "value")
			if err != nil {
				n.close()
				return nil, fmt.Errorf("hot: %s: fill %d keys: %w", sys.name, k, err)
			}
			for _, g := range counts {
				res := measureHot(ctx, n, keys, g, r.c.HotFor)
				v := map[string]float64{
					"ns_op":     res.nsPerOp(),
					"allocs_op": float64(res.mallocs) / float64(max(res.ops, 1)),
					"ops":       float64(res.ops),
					"misses":    float64(res.errors),
				}
				if local >= 0 && sys.local {
					v["local_after_fill"] = local
				}
				s.add(Row{System: sys.name, Case: hotCase(k, g), Values: v, Note: sys.note})
				if err := ctx.Err(); err != nil {
					n.close()
					return nil, err
				}
			}
		}
		n.close()
	}
	ratioTo(s, sysRistretto, "ns_op", "vs_ristretto")
	return s, nil
}

// hotNode flushes Redis and makes sys's node for the scenario, or says why
// sys has no figures.
func (r *runner) hotNode(ctx context.Context, sys system) (n node, why string, err error) {
	if why := r.skip(sys); why != "" {
		return nil, why, nil
	}
	if err := r.flush(ctx); err != nil {
		return nil, "", err
	}
	n, err = sys.newNode(r.addr, nodeOptions{prefix: "hot"})
	if err != nil {
		return nil, "adapter failed: " + err.Error(), nil
	}
	return n, "", nil
}

// ratioTo sets every row's key to its value of of over the baseline
// system's in the same case.
func ratioTo(s *Section, baseline, of, key string) {
	base := map[string]float64{}
	for _, r := range s.Rows {
		if r.System == baseline && r.Skipped == "" {
			base[r.Case] = r.value(of)
		}
	}
	for _, r := range s.Rows {
		if b, ok := base[r.Case]; ok && r.Skipped == "" && b > 0 {
			r.Values[key] = r.value(of) / b
		}
	}
}
