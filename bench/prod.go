package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// The prod scenario: the mixed scenario's machinery, with the shape of
// the workloads published for production cache clusters (Twitter's,
// Meta's): a steeper key popularity (Zipf s 1.2; they report 1.07 to 1.3),
// a fifth of operations writing, a third of those deletes (an update the
// application does not read back, or a row removed), and values from 300 B
// to 2 KB, log-uniform per key. Each system runs Config.ProdRuns times on
// the same workload; the table gives the median of each figure, with the
// spread (lowest to highest run) of the tail latencies in the notes.

// prodDefaults are the prod scenario's parameters where Config leaves them
// zero.
var prodDefaults = mixedParams{zipfS: 1.2, writeFrac: 0.2, deleteFrac: 0.3, sizeLo: 300, sizeHi: 2048}

func prodParams(c Config) mixedParams {
	p := prodDefaults
	if c.ProdZipfS > 0 {
		p.zipfS = c.ProdZipfS
	}
	if c.ProdWriteFrac > 0 {
		p.writeFrac = c.ProdWriteFrac
	}
	if c.ProdDeleteFrac > 0 {
		p.deleteFrac = c.ProdDeleteFrac
	}
	return p
}

func prodSection(ctx context.Context, r *runner) (*Section, error) {
	c := r.c
	p := prodParams(c)
	s := &Section{Name: "prod",
		Title: fmt.Sprintf("7. Production-like: %d nodes × %d ops/s, Zipf s=%.2f over %d keys, %.0f%% writes (%.0f%% of them deletes), values %d B to %d B, median of %d runs of %v",
			c.Nodes, c.Rate, p.zipfS, c.Keys, 100*p.writeFrac, 100*p.deleteFrac, p.sizeLo, p.sizeHi, c.ProdRuns, c.MixedFor),
		Columns: []Column{
			{"ops_s", "ops/s", UnitCount},
			{"p50", "read p50", UnitNs},
			{"p99", "read p99", UnitNs},
			{"p999", "read p99.9", UnitNs},
			{"w_p50", "write p50", UnitNs},
			{"w_p99", "write p99", UnitNs},
			{"local", "local hits", UnitFrac},
			{"fresh_0", "fresh Δ=0", UnitFrac},
			{"nines_0", "nines Δ=0", UnitNines},
		},
		Notes: []string{
			"As the mixed scenario, with a write being the system's write API and a delete its delete API (both change the database first). " +
				"Each figure is the median of the runs; the spread of read p99 and p99.9 and write p50 across runs follows each row.",
		},
		Charts: []Chart{
			{Title: "Read latency, median of runs (lower is better)", Keys: []string{"p50", "p99", "p999"}, Labels: []string{"p50", "p99", "p99.9"}, Unit: UnitNs, Log: true},
			{Title: "Write latency, median of runs (lower is better)", Keys: []string{"w_p50", "w_p99"}, Labels: []string{"p50", "p99"}, Unit: UnitNs, Log: true},
		},
	}
	for _, sys := range mixedSystems() {
		r.progress("prod", sys.name)
		if why := r.skip(sys); why != "" {
			s.skip(sys.name, "", why)
			continue
		}
		var runs []Row
		var failed error
		for range c.ProdRuns {
			res, err := runMixed(ctx, r, sys, false, p)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				failed = err
				break
			}
			row := mixedRow(r, sys, res)
			w := slices.Clone(res.writeLats)
			slices.Sort(w)
			if len(w) > 0 {
				row.Values["w_p50"] = float64(percentile(w, 50))
				row.Values["w_p99"] = float64(percentile(w, 99))
			}
			runs = append(runs, row)
		}
		if failed != nil {
			s.skip(sys.name, "", "adapter failed: "+failed.Error())
			continue
		}
		s.add(medianRow(sys, runs))
	}
	return s, nil
}

// medianRow is the median of each value across runs, with the spread of
// the tails in the note.
func medianRow(sys system, runs []Row) Row {
	v := map[string]float64{}
	spread := func(key string) (lo, hi float64) {
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, r := range runs {
			if x, ok := r.Values[key]; ok {
				lo, hi = min(lo, x), max(hi, x)
			}
		}
		return lo, hi
	}
	for key := range runs[0].Values {
		var xs []float64
		for _, r := range runs {
			if x, ok := r.Values[key]; ok && !math.IsNaN(x) {
				xs = append(xs, x)
			}
		}
		if len(xs) == 0 {
			continue
		}
		slices.Sort(xs)
		v[key] = xs[len(xs)/2]
	}
	note := fmt.Sprintf("%d runs; spread", len(runs))
	for _, k := range []struct{ key, name string }{{"p99", "read p99"}, {"p999", "read p99.9"}, {"w_p50", "write p50"}} {
		lo, hi := spread(k.key)
		if !math.IsInf(lo, 0) {
			note += fmt.Sprintf(" %s %s–%s,", k.name, fmtDur(time.Duration(lo)), fmtDur(time.Duration(hi)))
		}
	}
	return Row{System: sys.name, Values: v, Note: note[:len(note)-1] + "; " + sys.note}
}
