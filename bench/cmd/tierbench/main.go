// Command tierbench runs tiercache side by side with its peers (rueidis
// client-side caching, go-redis v9's client-side caching, go-redis/cache,
// sturdyc) and the raw baselines (go-redis with no local tier, ristretto
// with no Redis), all in one process run, on the same Redis and seeds.
//
// Scenarios: hot (hit latency at 1, 1,024 and 65,536 keys), mixed (several
// nodes, Zipf keys, paced reads and writes, freshness against a truth
// map), stampede (one cold key read everywhere at once), batch (100 keys
// per call), outage (Redis blackholed) and refresh (hot keys expiring).
//
// It prints markdown tables on stdout, a progress line per system on
// stderr, and writes results.json and one SVG chart per scenario to -out.
//
//	go -C bench run ./cmd/tierbench [flags]
//
// Without -redis it starts redis-server on a free 127.0.0.1 port (or, with
// a warning, an in-process miniredis). It runs FLUSHALL between systems:
// never give it a Redis whose data matters.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tiercache/tiercache/bench"
)

func main() { os.Exit(run()) }

// run returns the exit code, so deferred cleanup (the redis-server child)
// runs before the process exits.
func run() int {
	var c bench.Config
	flag.StringVar(&c.Redis, "redis", "", "Redis host:port (it gets FLUSHALL); empty starts redis-server on a free 127.0.0.1 port, or miniredis if it is missing")
	scenarios := flag.String("scenarios", strings.Join(bench.Scenarios, ","), "comma-separated scenarios to run")
	flag.StringVar(&c.Out, "out", "", "directory for results.json and the SVG charts (default: a fresh temporary directory)")
	systems := flag.String("systems", "", "comma-separated systems to run (default: all)")
	flag.Uint64Var(&c.Seed, "seed", 1, "seed for every workload")
	flag.DurationVar(&c.HotFor, "hot", 0, "how long each hot-path case runs (default 200ms)")
	flag.IntVar(&c.Nodes, "nodes", 0, "replicas per system in the mixed and stampede scenarios (default 4)")
	flag.IntVar(&c.Keys, "keys", 0, "key space of the mixed scenario (default 10000)")
	flag.Float64Var(&c.ZipfS, "zipf", 0, "Zipf exponent of the mixed scenario's keys, > 1 (default 1.1)")
	flag.IntVar(&c.Rate, "rate", 0, "operations per second per node in the mixed scenario (default 1000)")
	flag.Float64Var(&c.WriteFrac, "writes", 0, "fraction of the mixed scenario's operations that are writes (default 0.02)")
	flag.DurationVar(&c.MixedFor, "mixed", 0, "how long the mixed scenario measures each system (default 3s)")
	flag.BoolVar(&c.Saturate, "saturate", false, "also run the mixed scenario with no pacing, as its own table")
	flag.IntVar(&c.ProdRuns, "prod-runs", 0, "runs of each system in the prod scenario, whose table gives the medians (default 3)")
	flag.Float64Var(&c.ProdZipfS, "prod-zipf", 0, "Zipf exponent of the prod scenario's keys (default 1.2)")
	flag.Float64Var(&c.ProdWriteFrac, "prod-writes", 0, "fraction of the prod scenario's operations that are writes (default 0.2)")
	flag.Float64Var(&c.ProdDeleteFrac, "prod-deletes", 0, "fraction of the prod scenario's writes that are deletes (default 0.3)")
	flag.DurationVar(&c.OutageFor, "outage", 0, "how long the outage scenario blackholes Redis (default 2s; 1s of warmup before, 3s of recovery after)")
	flag.DurationVar(&c.OutageAfter, "outage-recovery", 0, "how long the outage scenario measures after Redis is back (default 3s)")
	flag.DurationVar(&c.RefreshFor, "refresh", 0, "how long the refresh scenario measures each system (default 2s)")
	smoke := flag.Bool("smoke", false, "run every scenario and system for a moment, as CI does (its figures mean nothing)")
	flag.Parse()
	if *smoke {
		s := bench.Smoke()
		s.Redis, s.Out, s.Seed, s.Saturate = c.Redis, c.Out, c.Seed, c.Saturate
		c = s
	}
	c.Scenarios = nil
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Scenarios = append(c.Scenarios, s)
		}
	}
	for _, s := range strings.Split(*systems, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.Systems = append(c.Systems, s)
		}
	}
	c.Progress = func(line string) { fmt.Fprintln(os.Stderr, "tierbench:", line) }

	// Ctrl-C cancels the run; Run then returns and stops its Redis.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tierbench:", err)
		return 1
	}
	return 0
}
