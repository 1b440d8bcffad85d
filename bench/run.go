package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is what one run measures. A zero field means its default.
type Config struct {
	// Redis is the host:port of the Redis to use. Default: empty, which
	// starts a redis-server child on a free loopback port (see [StartRedis]).
	Redis string
	// Duration is how long each hot-path case runs. Default: 2s.
	Duration time.Duration
	// Trials is the number of staleness trials per library. Default: 200.
	Trials int
	// StaleCap is how long B may take to see a write before the trial
	// counts as stale. Default: 2s.
	StaleCap time.Duration
	// Scenarios selects what runs: "hot" (hot-path latency), "staleness",
	// "outage" (a blackholed Redis under paced load) and "refresh" (hot
	// keys expiring under paced load). Default: all.
	Scenarios []string
	// OutageFor is how long the outage scenario blackholes Redis.
	// Default: 5s.
	OutageFor time.Duration
	// RefreshFor is how long the refresh scenario measures each system,
	// after a warmup of one TTL. Default: 10s (the published figures use 30s).
	RefreshFor time.Duration
	// Progress, when set, gets a line as each scenario and system starts.
	Progress func(string)
}

// runs reports whether scenario s is selected.
func (c Config) runs(s string) bool { return slices.Contains(c.Scenarios, s) }

func (c Config) withDefaults() Config {
	if c.Duration == 0 {
		c.Duration = 2 * time.Second
	}
	if c.Trials == 0 {
		c.Trials = 200
	}
	if c.StaleCap == 0 {
		c.StaleCap = 2 * time.Second
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = []string{"hot", "staleness", "outage", "refresh"}
	}
	if c.OutageFor == 0 {
		c.OutageFor = 5 * time.Second
	}
	if c.RefreshFor == 0 {
		c.RefreshFor = 10 * time.Second
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// hotKey is the one key every hot-path case reads.
const hotKey = "hot"

// Run measures every library against one Redis and writes the tables to w.
// It starts (and stops) a redis-server when c.Redis is empty; it returns
// [ErrNoRedisServer] when that binary is missing.
func Run(ctx context.Context, c Config, w io.Writer) error {
	c = c.withDefaults()
	if c.Trials < 1 || c.Duration < 0 || c.StaleCap < 0 {
		return errors.New("bench: Trials, Duration and StaleCap must be positive")
	}
	addr := c.Redis
	if addr == "" {
		srv, err := StartRedis(ctx)
		if err != nil {
			return err
		}
		defer srv.Close()
		addr = srv.Addr
	}
	version, err := redisVersion(ctx, addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "tierbench: %s %s/%s, GOMAXPROCS=%d, NumCPU=%d, Redis %s at %s\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), version, addr)
	fmt.Fprintf(w, "hot path: %v per case; staleness: %d trials, cap %v\n\n", c.Duration, c.Trials, c.StaleCap)

	// One run ID keeps this run's staleness keys apart from an earlier
	// run's on a shared -redis.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	hot := table{header: []string{"library", "goroutines", "ns/op", "allocs/op", "ops", "errors", "note"}}
	stale := table{header: []string{"library", "trials", "p50", "p99", "max", "stale > " + c.StaleCap.String(), "note"}}
	for _, lib := range libraries() {
		if !c.runs("hot") && !c.runs("staleness") {
			break
		}
		if lib.name == "rueidis" && major(version) < 6 {
			hot.add(lib.name, "-", "-", "-", "-", "-", "skipped: needs Redis 6+")
			stale.add(lib.name, "-", "-", "-", "-", "-", "skipped: needs Redis 6+")
			continue
		}
		if err := runLibrary(ctx, c, lib, addr, run, &hot, &stale); err != nil {
			return err
		}
	}
	if c.runs("hot") {
		fmt.Fprintln(w, "1. Hot-path hit latency (one cached key, tight loop; ns/op = wall time / total ops)")
		if err := hot.write(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if c.runs("staleness") {
		fmt.Fprintln(w, "2. Staleness after a write (A writes, B reads until it sees the new value; time from A's write returning)")
		if err := stale.write(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if c.runs("outage") {
		t, err := outageTable(ctx, addr, 3*time.Second, c.OutageFor, 5*time.Second)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "3. Redis blackholed for %v (%d nodes per library, each behind its own loopback proxy; %d paced reads/s per node over %d Zipf keys; loader %v)\n",
			c.OutageFor, OutageNodes, OutageRate, OutageKeys, OutageLoadCost)
		if err := t.write(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if c.runs("refresh") {
		t, err := refreshTable(ctx, addr, RefreshTTL, c.RefreshFor, func(sys string) { c.Progress("refresh: " + sys) })
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "4. Hot keys expiring (%d nodes per system; %d paced reads/s per node over %d Zipf keys; TTL %v; loader %v; measured %v after one TTL of warmup; a read waited if it took over %v)\n",
			RefreshNodes, RefreshRate, RefreshKeys, RefreshTTL, RefreshLoadCost, c.RefreshFor, RefreshWaited)
		if err := t.write(w); err != nil {
			return err
		}
	}
	return nil
}

func runLibrary(ctx context.Context, c Config, lib library, addr, run string, hot, stale *table) error {
	a, err := lib.newNode(addr)
	if err != nil {
		return err
	}
	defer a.close()
	b, err := lib.newNode(addr)
	if err != nil {
		return err
	}
	defer b.close()

	// Hot path, on node A.
	key := hotKey + ":" + run
	if err := a.write(ctx, key, "value"); err != nil {
		return fmt.Errorf("%s: write: %w", lib.name, err)
	}
	if err := warm(ctx, a, lib, key, "value", 2*time.Second); err != nil {
		return err
	}
	counts := []int{1}
	if p := runtime.GOMAXPROCS(0); p > 1 {
		counts = append(counts, p)
	}
	for _, g := range counts {
		r := measureHot(ctx, a, key, g, c.Duration)
		hot.add(lib.name, strconv.Itoa(g), fmt.Sprintf("%.1f", r.nsPerOp()),
			fmt.Sprintf("%.2f", r.allocsPerOp()), strconv.FormatInt(r.ops, 10),
			strconv.FormatInt(r.errors, 10), lib.note)
		if err := ctx.Err(); err != nil {
			return err
		}
	}

	if !lib.shared {
		stale.add(lib.name, "-", "-", "-", "-", "-", "n/a: "+strings.TrimPrefix(lib.note, "baseline: "))
		return nil
	}
	trials, err := measureStaleness(ctx, lib, a, b, c.Trials, c.StaleCap, lib.name+":"+run)
	if err != nil {
		return err
	}
	s := summarize(trials, c.StaleCap)
	note := lib.note
	if !lib.invalidates {
		note += fmt.Sprintf("; trials run %d at a time", concurrentTrials)
	}
	stale.add(lib.name, strconv.Itoa(s.trials), s.p50, s.p99, s.max, strconv.Itoa(s.stale), note)
	return nil
}

func redisVersion(ctx context.Context, addr string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("redis INFO at %s: %w", addr, err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "unknown", nil
}

// major returns the major version of "7.0.15", or 0 if it cannot tell.
func major(version string) int {
	m, _, _ := strings.Cut(version, ".")
	n, _ := strconv.Atoi(m)
	return n
}
