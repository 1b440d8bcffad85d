package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/examples/devredis"
)

// Scenarios are the scenario names, in the order a run takes them.
var Scenarios = []string{"hot", "mixed", "stampede", "batch", "outage", "refresh", "prod"}

// Config is what one run measures. A zero field means its default.
type Config struct {
	// Redis is the host:port of the Redis to use. Default: empty, which
	// starts a redis-server child on a free loopback port, or an
	// in-process miniredis (with a warning) when the binary is missing.
	// tierbench runs FLUSHALL on it between systems: never point it at a
	// Redis whose data matters.
	Redis string
	// Scenarios selects what runs (see [Scenarios]). Default: all.
	Scenarios []string
	// Out is the directory results.json and the charts go to. Default: a
	// fresh temporary directory.
	Out string
	// Systems, when set, limits the run to the systems with these names.
	Systems []string
	// Seed seeds every workload, the same for every system. Default: 1.
	Seed uint64

	// HotFor is how long each hot-path case runs. Default: 200ms.
	HotFor time.Duration
	// HotKeys are the hot-path key counts, each a power of two.
	// Default: 1, 1,024 and 65,536.
	HotKeys []int

	// Nodes is how many replicas of a system the mixed, stampede scenarios
	// run. Default: 4.
	Nodes int
	// Keys is the mixed scenario's key space. Default: 10,000.
	Keys int
	// ZipfS is the Zipf exponent of the mixed scenario's keys (> 1).
	// Default: 1.1.
	ZipfS float64
	// Rate is each node's operations per second in the mixed scenario.
	// Default: 1,000.
	Rate int
	// WriteFrac is the fraction of the mixed scenario's operations that
	// are writes. Default: 0.02.
	WriteFrac float64
	// MixedWarmup is run before the mixed scenario measures. Default: 500ms.
	MixedWarmup time.Duration
	// MixedFor is how long the mixed scenario measures each system.
	// Default: 3s.
	MixedFor time.Duration
	// Saturate also runs the mixed scenario unpaced, as its own table.
	Saturate bool

	// ProdRuns is how many times the prod scenario runs each system; the
	// table gives the medians. Default: 3.
	ProdRuns int
	// ProdZipfS, ProdWriteFrac and ProdDeleteFrac set the prod scenario's
	// key skew, share of writes and share of deletes among the writes.
	// Defaults: 1.2, 0.2, 0.3.
	ProdZipfS, ProdWriteFrac, ProdDeleteFrac float64

	// OutageWarm, OutageFor and OutageAfter are the outage scenario's
	// phases. Defaults: 1s, 2s, 3s.
	OutageWarm, OutageFor, OutageAfter time.Duration
	// RefreshWarm and RefreshFor are how long the refresh scenario warms
	// up and then measures each system. Defaults: one TTL (2s) and 2s (the
	// README's figures use 30s).
	RefreshWarm, RefreshFor time.Duration

	// Progress, when set, gets a line as each scenario and system starts.
	Progress func(string)
}

// Smoke is a configuration that runs every scenario and system in a few
// seconds each, for CI: its figures mean nothing.
func Smoke() Config {
	return Config{
		HotFor: 20 * time.Millisecond, HotKeys: []int{1, 64},
		Keys: 200, Rate: 400, MixedWarmup: 100 * time.Millisecond, MixedFor: 300 * time.Millisecond, WriteFrac: 0.1,
		OutageWarm: 300 * time.Millisecond, OutageFor: 400 * time.Millisecond, OutageAfter: 300 * time.Millisecond,
		RefreshWarm: 200 * time.Millisecond, RefreshFor: 300 * time.Millisecond,
		ProdRuns: 1,
	}
}

// runs reports whether scenario s is selected.
func (c Config) runs(s string) bool { return slices.Contains(c.Scenarios, s) }

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HotFor, 200*time.Millisecond)
	def(&c.MixedWarmup, 500*time.Millisecond)
	def(&c.MixedFor, 3*time.Second)
	def(&c.OutageWarm, time.Second)
	def(&c.OutageFor, 2*time.Second)
	def(&c.OutageAfter, 3*time.Second)
	def(&c.RefreshWarm, RefreshTTL)
	def(&c.RefreshFor, 2*time.Second)
	if len(c.HotKeys) == 0 {
		c.HotKeys = defaultHotKeys
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = Scenarios
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Nodes == 0 {
		c.Nodes = 4
	}
	if c.Keys == 0 {
		c.Keys = 10_000
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.WriteFrac == 0 {
		c.WriteFrac = 0.02
	}
	if c.ProdRuns == 0 {
		c.ProdRuns = 3
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	return c
}

// check reports every bad field at once.
func (c Config) check() error {
	var errs []error
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios, s) {
			errs = append(errs, fmt.Errorf("unknown scenario %q (want one of %s)", s, strings.Join(Scenarios, ", ")))
		}
	}
	for name, d := range map[string]time.Duration{"hot duration": c.HotFor, "mixed warmup": c.MixedWarmup, "mixed duration": c.MixedFor,
		"outage warmup": c.OutageWarm, "outage": c.OutageFor, "outage recovery": c.OutageAfter,
		"refresh warmup": c.RefreshWarm, "refresh duration": c.RefreshFor} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s is %v, want > 0", name, d))
		}
	}
	for _, k := range c.HotKeys {
		if k < 1 || k&(k-1) != 0 || k > 1<<22 {
			errs = append(errs, fmt.Errorf("hot key count %d is not a power of two up to 4M", k))
		}
	}
	if c.Nodes < 1 || c.Nodes > 64 {
		errs = append(errs, fmt.Errorf("nodes is %d, want 1 to 64", c.Nodes))
	}
	if c.Keys < 2 {
		errs = append(errs, fmt.Errorf("keys is %d, want at least 2", c.Keys))
	}
	if c.ZipfS <= 1 {
		errs = append(errs, fmt.Errorf("zipf exponent is %v, want > 1", c.ZipfS))
	}
	if c.Rate < mixedWorkers || c.Rate > 1_000_000 {
		errs = append(errs, fmt.Errorf("rate is %d ops/s per node, want %d to 1,000,000", c.Rate, mixedWorkers))
	}
	if c.WriteFrac < 0 || c.WriteFrac > 1 {
		errs = append(errs, fmt.Errorf("write fraction is %v, want 0 to 1", c.WriteFrac))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: %w", errors.Join(errs...))
	}
	return nil
}

// runner is one run's shared state.
type runner struct {
	c     Config
	addr  string
	env   Env
	admin *redis.Client
	start time.Time
}

func (r *runner) progress(scenario, sys string) {
	r.c.Progress(fmt.Sprintf("%-15s %-38s %6.1fs", scenario, sys, time.Since(r.start).Seconds()))
}

func (r *runner) skip(sys system) string {
	if len(r.c.Systems) > 0 && !slices.Contains(r.c.Systems, sys.name) {
		return "not selected (-systems)"
	}
	return skipReason(sys, r.env)
}

// flush empties Redis, so each system starts cold.
func (r *runner) flush(ctx context.Context) error {
	if err := r.admin.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("FLUSHALL: %w", err)
	}
	return nil
}

// commands is the server's count of commands processed so far.
func (r *runner) commands(ctx context.Context) (int64, error) {
	info, err := r.admin.Info(ctx, "stats").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO stats has no total_commands_processed")
}

// Run measures every system against one Redis, writes the markdown tables
// to w, and results.json and one SVG per scenario to c.Out. It starts (and
// stops) an embedded Redis when c.Redis is empty. warn gets a line for
// anything the reader must know about the run's setup.
func Run(ctx context.Context, c Config, w io.Writer) (*Results, error) {
	c = c.withDefaults()
	if err := c.check(); err != nil {
		return nil, err
	}
	addr, kind := c.Redis, "external"
	if addr == "" {
		srv, err := devredis.Start(ctx, devredis.Options{AllowMiniredis: true})
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		addr, kind = srv.Addr, string(srv.Kind)
		if srv.Kind == devredis.Miniredis {
			c.Progress("WARNING: redis-server is not on PATH, so this run uses in-process miniredis: its latencies are not Redis's, and the client-tracking systems are skipped. Install redis-server for real figures.")
		}
	}
	if c.Out == "" {
		dir, err := os.MkdirTemp("", "tierbench-")
		if err != nil {
			return nil, err
		}
		c.Out = dir
	} else if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return nil, err
	}
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	version := "unknown (miniredis)"
	if kind != string(devredis.Miniredis) {
		v, err := redisVersion(ctx, admin)
		if err != nil {
			return nil, fmt.Errorf("redis INFO at %s: %w", addr, err)
		}
		version = v
	}
	r := &runner{c: c, addr: addr, env: newEnv(version, kind), admin: admin, start: time.Now()}
	res := &Results{Env: r.env, Params: params(c)}
	fmt.Fprintf(w, "%s\n\n", r.env.header())

	type scenario struct {
		name string
		run  func(context.Context, *runner) (*Section, error)
	}
	all := []scenario{
		{"hot", hotSection},
		{"mixed", func(ctx context.Context, r *runner) (*Section, error) { return mixedSection(ctx, r, false) }},
		{"stampede", stampedeSection},
		{"batch", batchSection},
		{"outage", outageSection},
		{"refresh", refreshSection},
		{"prod", prodSection},
	}
	for _, sc := range all {
		if !c.runs(sc.name) {
			continue
		}
		sections := []func(context.Context, *runner) (*Section, error){sc.run}
		if sc.name == "mixed" && c.Saturate {
			sections = append(sections, func(ctx context.Context, r *runner) (*Section, error) { return mixedSection(ctx, r, true) })
		}
		for _, run := range sections {
			s, err := run(ctx, r)
			if err != nil {
				return res, fmt.Errorf("%s: %w", sc.name, err)
			}
			res.Scenarios = append(res.Scenarios, s)
			if err := s.writeMarkdown(w); err != nil {
				return res, err
			}
			if err := s.writeSVG(filepath.Join(c.Out, s.Name+".svg")); err != nil {
				return res, err
			}
		}
	}
	if err := res.writeJSON(filepath.Join(c.Out, "results.json")); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "results.json and one SVG chart per scenario are in %s\n", c.Out)
	return res, nil
}

// params records the run's parameters in results.json.
func params(c Config) map[string]any {
	return map[string]any{
		"scenarios": c.Scenarios, "seed": c.Seed, "hot_for": c.HotFor.String(), "hot_keys": c.HotKeys,
		"nodes": c.Nodes, "keys": c.Keys, "zipf_s": c.ZipfS, "rate_per_node": c.Rate, "write_frac": c.WriteFrac,
		"mixed_warmup": c.MixedWarmup.String(), "mixed_for": c.MixedFor.String(), "saturate": c.Saturate,
		"outage_warm": c.OutageWarm.String(), "outage_for": c.OutageFor.String(), "outage_after": c.OutageAfter.String(),
		"refresh_warm": c.RefreshWarm.String(), "refresh_for": c.RefreshFor.String(),
		"prod_runs": c.ProdRuns, "prod_zipf_s": prodParams(c).zipfS, "prod_write_frac": prodParams(c).writeFrac,
		"prod_delete_frac": prodParams(c).deleteFrac, "prod_value_bytes": []int{prodParams(c).sizeLo, prodParams(c).sizeHi},
	}
}

func redisVersion(ctx context.Context, rdb *redis.Client) (string, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", err
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
