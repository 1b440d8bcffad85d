// Command tierbench runs tiercache side by side with raw go-redis, raw
// ristretto, go-redis/cache and rueidis client-side caching, and prints the
// hot-path hit latency and the staleness after a write as plain-text tables.
//
// It also runs an outage scenario (Redis blackholed under paced load) and a
// refresh scenario (hot keys expiring under paced load, beside sturdyc's
// early refreshes).
//
//	go -C bench run ./cmd/tierbench [-redis host:port] [-duration 2s] [-trials 200] [-scenarios hot,staleness,outage,refresh] [-outage 5s] [-refresh 10s]
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
	flag.StringVar(&c.Redis, "redis", "", "Redis host:port; empty starts a redis-server child on a free 127.0.0.1 port")
	flag.DurationVar(&c.Duration, "duration", 0, "how long each hot-path case runs (default 2s)")
	flag.IntVar(&c.Trials, "trials", 0, "staleness trials per library (default 200)")
	flag.DurationVar(&c.StaleCap, "stale-cap", 0, "how long a staleness trial waits for the new value (default 2s)")
	scenarios := flag.String("scenarios", "hot,staleness,outage,refresh", "comma-separated scenarios to run: hot, staleness, outage, refresh")
	flag.DurationVar(&c.OutageFor, "outage", 0, "how long the outage scenario blackholes Redis (default 5s)")
	flag.DurationVar(&c.RefreshFor, "refresh", 0, "how long the refresh scenario measures each system (default 10s)")
	flag.Parse()
	for _, s := range strings.Split(*scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "hot", "staleness", "outage", "refresh":
			c.Scenarios = append(c.Scenarios, s)
		case "":
		default:
			fmt.Fprintf(os.Stderr, "tierbench: unknown scenario %q (want hot, staleness, outage, refresh)\n", s)
			return 2
		}
	}
	c.Progress = func(line string) { fmt.Fprintln(os.Stderr, "tierbench:", line) }

	// Ctrl-C cancels the run; Run then returns and kills its redis-server.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.Run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tierbench:", err)
		return 1
	}
	return 0
}
