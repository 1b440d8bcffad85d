package bench

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// The batch scenario: one node reads batchSize keys at once through the
// system's batch API (or a loop where it has none), cold (keys nobody has
// cached, so the loader runs) and warm (the same keys again and again).
const (
	batchSize     = 100
	batchLoadCost = time.Millisecond // one query for all the missing keys
	batchCold     = 15
	batchWarm     = 300
)

type batchResult struct {
	cold, warm []time.Duration
	loads      float64 // loader calls per cold batch
	missing    int64   // keys a batch failed to return
}

func runBatch(ctx context.Context, r *runner, sys system) (batchResult, error) {
	var res batchResult
	n, err := sys.newNode(r.addr, nodeOptions{prefix: "batch"})
	if err != nil {
		return res, err
	}
	defer n.close()
	var loads atomic.Int64
	bload := func(ctx context.Context, keys []string) (map[string]string, error) {
		loads.Add(1)
		sleepCtx(ctx, batchLoadCost)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out := make(map[string]string, len(keys))
		for _, k := range keys {
			out[k] = "v" + k
		}
		return out, nil
	}
	// A system without a batch API is read key by key, each with a
	// single-key loader: the loop an application would write.
	many := func(ctx context.Context, keys []string) (map[string]string, error) {
		if b, ok := n.(batchNode); ok {
			return b.getOrLoadMany(ctx, keys, bload)
		}
		out := make(map[string]string, len(keys))
		for _, k := range keys {
			v, err := n.getOrLoad(ctx, k, func(ctx context.Context, k string) (string, error) {
				m, err := bload(ctx, []string{k})
				return m[k], err
			})
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	}
	batch := func(prefix string) []string {
		keys := make([]string, batchSize)
		for i := range keys {
			keys[i] = fmt.Sprintf("%s-%d", prefix, i)
		}
		return keys
	}
	timed := func(keys []string) (time.Duration, error) {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		t0 := time.Now()
		got, err := many(rctx, keys)
		d := time.Since(t0)
		res.missing += int64(len(keys) - len(got))
		return d, err
	}
	for i := range batchCold {
		d, err := timed(batch(fmt.Sprintf("cold%d", i)))
		if err != nil {
			return res, err
		}
		res.cold = append(res.cold, d)
	}
	res.loads = float64(loads.Load()) / batchCold
	warm := batch("warm")
	// Fills may be asynchronous: a few unmeasured reads first.
	for range 5 {
		if _, err := timed(warm); err != nil {
			return res, err
		}
	}
	for range batchWarm {
		d, err := timed(warm)
		if err != nil {
			return res, err
		}
		res.warm = append(res.warm, d)
	}
	slices.Sort(res.cold)
	slices.Sort(res.warm)
	return res, ctx.Err()
}

func batchSection(ctx context.Context, r *runner) (*Section, error) {
	s := &Section{Name: "batch",
		Title: fmt.Sprintf("4. Batch: %d keys per call on one node, cold (%d calls, loader %v per query) and warm (%d calls)",
			batchSize, batchCold, batchLoadCost, batchWarm),
		Columns: []Column{
			{"cold_p50", "cold p50", UnitNs},
			{"cold_p99", "cold p99", UnitNs},
			{"loads", "loader calls per cold call", UnitCount},
			{"warm_p50", "warm p50", UnitNs},
			{"warm_p99", "warm p99", UnitNs},
			{"warm_vs_redis", "warm p50 vs go-redis", UnitRatio},
			{"missing", "keys missing", UnitCount},
		},
		Notes: []string{"\"loader calls per cold call\" is 1 for a system that loads a batch's misses in one query; a system without a batch API is read key by key, so its loader runs once per key. " +
			"\"warm p50 vs go-redis\" divides by raw go-redis's MGET in the same run."},
		Charts: []Chart{{Title: "Batch latency (lower is better)", Keys: []string{"cold_p50", "warm_p50"}, Labels: []string{"cold p50", "warm p50"}, Unit: UnitNs, Log: true}},
	}
	for _, sys := range systems() {
		r.progress("batch", sys.name)
		if why := r.skip(sys); why != "" {
			s.skip(sys.name, "", why)
			continue
		}
		if err := r.flush(ctx); err != nil {
			return nil, err
		}
		res, err := runBatch(ctx, r, sys)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.skip(sys.name, "", "adapter failed: "+err.Error())
			continue
		}
		v := map[string]float64{"loads": res.loads, "missing": float64(res.missing),
			"cold_p50": float64(percentile(res.cold, 50)), "cold_p99": float64(percentile(res.cold, 99)),
			"warm_p50": float64(percentile(res.warm, 50)), "warm_p99": float64(percentile(res.warm, 99))}
		s.add(Row{System: sys.name, Values: v, Note: sys.batch})
	}
	ratioTo(s, sysRawRedis, "warm_p50", "warm_vs_redis")
	return s, nil
}
