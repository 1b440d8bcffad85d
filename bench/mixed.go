package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The mixed scenario: Config.Nodes replicas of one system in this process,
// each with its own clients, read and write Zipf-distributed keys at a
// paced rate. A write changes the key's row in the "database" (truth)
// first, then tells the cache through the system's write API; it is
// acknowledged when that returns. A read goes through the system's
// cache-aside call, whose loader reads the database.
//
// A read is stale by Δ when it returns a version older than one that was
// acknowledged more than Δ before the read began.
const (
	mixedWorkers   = 4 // goroutines per node sharing its rate
	mixedLoadCost  = time.Millisecond
	mixedValueSize = 100
	// mixedLongStale is the "stale beyond" threshold the table reports.
	mixedLongStale = 1500 * time.Millisecond
)

// freshDeltas are the Δ the freshness columns report.
var freshDeltas = []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}

// truth is the database: each key's current version, and the time each
// version's write was acknowledged.
type truth struct {
	mu   []sync.Mutex // one per key
	ver  []uint64
	acks [][]ack // per key, in acknowledgement order
	pad  string  // sliced to each key's size
	size []int   // bytes of padding in each key's value
}

// ack is one acknowledged write: when, and the highest version acked by
// then (acks of one key can return out of version order).
type ack struct {
	at     int64 // nanoseconds since the run's start
	maxVer uint64
}

func newTruth(keys int) *truth {
	t := &truth{mu: make([]sync.Mutex, keys), ver: make([]uint64, keys), acks: make([][]ack, keys),
		pad: strings.Repeat("x", mixedValueSize), size: make([]int, keys)}
	for k := range t.size {
		t.size[k] = mixedValueSize
	}
	return t
}

// sizeValues gives each key a value size drawn from a log-uniform
// distribution between lo and hi bytes, from seed.
func (t *truth) sizeValues(lo, hi int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	t.pad = strings.Repeat("x", hi)
	for k := range t.size {
		t.size[k] = int(math.Exp(math.Log(float64(lo)) + rng.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
	}
}

func (t *truth) value(k int, ver uint64) string {
	return "v" + strconv.FormatUint(ver, 10) + ":" + t.pad[:t.size[k]]
}

func version(v string) (uint64, bool) {
	s, _, ok := strings.Cut(strings.TrimPrefix(v, "v"), ":")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// read is the database read the loader does.
func (t *truth) read(k int) string {
	t.mu[k].Lock()
	defer t.mu[k].Unlock()
	return t.value(k, t.ver[k])
}

// bump is the database write: the key's next version.
func (t *truth) bump(k int) uint64 {
	t.mu[k].Lock()
	defer t.mu[k].Unlock()
	t.ver[k]++
	return t.ver[k]
}

func (t *truth) ack(k int, ver uint64, at int64) {
	t.mu[k].Lock()
	defer t.mu[k].Unlock()
	m := ver
	if n := len(t.acks[k]); n > 0 {
		m = max(m, t.acks[k][n-1].maxVer)
		at = max(at, t.acks[k][n-1].at) // keep the list sorted by time
	}
	t.acks[k] = append(t.acks[k], ack{at: at, maxVer: m})
}

// newest returns the highest version of key k acknowledged before at.
func (t *truth) newest(k int, at int64) uint64 {
	a := t.acks[k]
	i, _ := slices.BinarySearchFunc(a, at, func(x ack, at int64) int {
		if x.at < at {
			return -1
		}
		return 1
	})
	if i == 0 {
		return 0
	}
	return a[i-1].maxVer
}

// mixedParams are what the mixed and prod scenarios set.
type mixedParams struct {
	zipfS      float64
	writeFrac  float64 // of all operations
	deleteFrac float64 // of the writes: the system's delete instead of its write
	sizeLo     int     // value sizes, log-uniform per key; 0: mixedValueSize for every key
	sizeHi     int
}

// mixedRead is one measured read.
type mixedRead struct {
	key int
	at  int64 // start, ns since the run's start
	ver uint64
	lat time.Duration
}

// mixedResult is one system's run.
type mixedResult struct {
	reads               []mixedRead
	writes, writeErrors int64
	readErrors          int64
	writeLats           []time.Duration // acknowledged writes in the measured window
	loads, local        int64           // in the measured window; local -1: unknown
	commands            float64
	elapsed             time.Duration
	truth               *truth
}

// runMixed runs the scenario for sys.
func runMixed(ctx context.Context, r *runner, sys system, saturate bool, p mixedParams) (mixedResult, error) {
	var res mixedResult
	c := r.c
	if err := r.flush(ctx); err != nil {
		return res, err
	}
	nodes, err := newNodes(c.Nodes, func(int) (node, error) { return sys.newNode(r.addr, nodeOptions{prefix: "mixed"}) })
	if err != nil {
		return res, err
	}
	defer closeAll(nodes)
	db := newTruth(c.Keys)
	if p.sizeLo > 0 {
		db.sizeValues(p.sizeLo, p.sizeHi, c.Seed)
	}
	res.truth = db
	keys := make([]string, c.Keys)
	index := make(map[string]int, c.Keys)
	for i := range keys {
		keys[i] = keyName(i)
		index[keys[i]] = i
	}
	var loads atomic.Int64
	query := simulatedQuery(mixedLoadCost, func(string) { loads.Add(1) })
	// The database row is read once the query's cost is paid, so a write
	// acknowledged meanwhile is seen.
	load := func(ctx context.Context, key string) (string, error) {
		if _, err := query(ctx, key); err != nil {
			return "", err
		}
		return db.read(index[key]), nil
	}

	start := time.Now()
	measureAt := start.Add(c.MixedWarmup)
	end := measureAt.Add(c.MixedFor)
	since := func(t time.Time) int64 { return t.Sub(start).Nanoseconds() }
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second * mixedWorkers / time.Duration(c.Rate)
	for i, n := range nodes {
		for w := range mixedWorkers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(r.c.Seed+uint64(i), uint64(w)))
				z := rand.NewZipf(rng, p.zipfS, 1, uint64(c.Keys-1))
				var tick *time.Ticker
				if !saturate {
					tick = time.NewTicker(interval)
					defer tick.Stop()
				}
				var mine []mixedRead
				var wlat []time.Duration
				var writes, werrs, rerrs int64
				for ops := 0; ops < maxMixedOps; ops++ {
					if tick != nil {
						select {
						case <-tick.C:
						case <-ctx.Done():
						}
					}
					now := time.Now()
					if now.After(end) || ctx.Err() != nil {
						break
					}
					k := int(z.Uint64())
					measured := !now.Before(measureAt)
					if rng.Float64() < p.writeFrac {
						ver := db.bump(k)
						wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
						var err error
						if rng.Float64() < p.deleteFrac {
							err = n.del(wctx, keys[k])
						} else {
							err = n.write(wctx, keys[k], db.value(k, ver))
						}
						cancel()
						if err != nil {
							werrs++
							continue
						}
						acked := time.Now()
						db.ack(k, ver, since(acked))
						if measured {
							writes++
							wlat = append(wlat, acked.Sub(now))
						}
						continue
					}
					rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					v, err := n.getOrLoad(rctx, keys[k], load)
					cancel()
					lat := time.Since(now)
					ver, ok := version(v)
					if err != nil || !ok {
						if measured {
							rerrs++
						}
						continue
					}
					if measured {
						mine = append(mine, mixedRead{key: k, at: since(now), ver: ver, lat: lat})
					}
				}
				mu.Lock()
				res.reads = append(res.reads, mine...)
				res.writeLats = append(res.writeLats, wlat...)
				res.writes += writes
				res.writeErrors += werrs
				res.readErrors += rerrs
				mu.Unlock()
			})
		}
	}
	// At the start of the measured window: the counters' baselines.
	sleepCtx(ctx, time.Until(measureAt))
	loads0 := loads.Load()
	local0 := sumLocal(nodes)
	cmds0, cmdsErr := r.commands(ctx)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.elapsed = time.Since(measureAt)
	res.loads = loads.Load() - loads0
	res.local = -1
	if local0 >= 0 {
		res.local = sumLocal(nodes) - local0
	}
	res.commands = math.NaN()
	if cmds1, err := r.commands(ctx); err == nil && cmdsErr == nil {
		res.commands = float64(cmds1 - cmds0)
	}
	// Freshness is judged against every write acked in the run, warmup
	// included; db.acks is complete once the workers are done.
	return res, nil
}

// maxMixedOps bounds each worker by count as well as by time.
const maxMixedOps = 50_000_000

func sumLocal(nodes []node) int64 {
	var s int64
	for _, n := range nodes {
		h := n.localHits()
		if h < 0 {
			return -1
		}
		s += h
	}
	return s
}

// mixedSection runs the scenario for every system. saturate runs it with
// no pacing: each worker issues its next operation as soon as the last
// returns.
func mixedSection(ctx context.Context, r *runner, saturate bool) (*Section, error) {
	c := r.c
	name, title := "mixed", fmt.Sprintf("2. Mixed workload, paced: %d nodes × %d ops/s, %.0f%% writes, Zipf s=%.2f over %d keys, %v measured after %v",
		c.Nodes, c.Rate, 100*c.WriteFrac, c.ZipfS, c.Keys, c.MixedFor, c.MixedWarmup)
	if saturate {
		name, title = "mixed-saturated", fmt.Sprintf("2b. Mixed workload, saturated: %d nodes × %d workers with no pacing, %.0f%% writes, Zipf s=%.2f over %d keys, %v measured",
			c.Nodes, mixedWorkers, 100*c.WriteFrac, c.ZipfS, c.Keys, c.MixedFor)
	}
	s := &Section{Name: name, Title: title,
		Columns: []Column{
			{"ops_s", "ops/s", UnitCount},
			{"p50", "read p50", UnitNs},
			{"p99", "read p99", UnitNs},
			{"p999", "read p99.9", UnitNs},
			{"local", "local hits", UnitFrac},
			{"redis", "Redis hits", UnitFrac},
			{"loads", "loader calls/read", UnitFrac},
			{"cmds_op", "Redis cmds/op", UnitFloat},
			{"writes_node_s", "acked writes/node/s", UnitCount},
		},
		Notes: []string{
			fmt.Sprintf("Each node runs %d workers; a write updates the database, then calls the system's write API, and is acknowledged when that returns; a read is the system's cache-aside call, whose loader reads the database (%v). "+
				"\"local hits\" is the share of reads the local tier answered, where the system reports it; \"loader calls/read\" counts every loader call, background refreshes included; \"Redis hits\" is what is left (1 − local − loader, at least 0). "+
				"\"Redis cmds/op\" is the server's total_commands_processed over the window divided by all operations: pub/sub, leases and heartbeats included.", mixedWorkers, mixedLoadCost),
			"A read is **fresh at Δ** unless it returned a version older than one acknowledged more than Δ before it began. " +
				"\"nines\" is −log10(1 − fraction fresh); with no stale read it is shown as ≥ log10(reads). \"stale > 1.5s\" counts reads behind by more than 1.5 s.",
		},
		Charts: []Chart{
			{Title: "Read latency (lower is better)", Keys: []string{"p50", "p99", "p999"}, Labels: []string{"p50", "p99", "p99.9"}, Unit: UnitNs, Log: true},
			{Title: "Freshness, nines (higher is better)", Keys: []string{"nines_0", "nines_1ms", "nines_10ms", "nines_100ms"},
				Labels: []string{"Δ=0", "Δ=1ms", "Δ=10ms", "Δ=100ms"}, Unit: UnitNines},
			{Title: "Throughput, ops/s", Keys: []string{"ops_s"}, Labels: []string{"ops/s"}, Unit: UnitCount},
		},
	}
	for _, d := range freshDeltas {
		s.Columns = append(s.Columns, Column{"nines_" + deltaName(d), "nines Δ=" + deltaName(d), UnitNines})
	}
	s.Columns = append(s.Columns, Column{"fresh_0", "fresh Δ=0", UnitFrac}, Column{"stale_long", "stale > 1.5s", UnitCount})
	for _, sys := range mixedSystems() {
		r.progress(name, sys.name)
		if why := r.skip(sys); why != "" {
			s.skip(sys.name, "", why)
			continue
		}
		res, err := runMixed(ctx, r, sys, saturate, mixedParams{zipfS: c.ZipfS, writeFrac: c.WriteFrac})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.skip(sys.name, "", "adapter failed: "+err.Error())
			continue
		}
		s.add(mixedRow(r, sys, res))
	}
	return s, nil
}

// deltaName is Δ as the column keys and heads spell it: "0", "1ms", ...
func deltaName(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	return d.String()
}

func mixedRow(r *runner, sys system, res mixedResult) Row {
	c := r.c
	reads := len(res.reads)
	ops := float64(int64(reads) + res.writes)
	v := map[string]float64{
		"ops_s":         ops / res.elapsed.Seconds(),
		"writes_node_s": float64(res.writes) / res.elapsed.Seconds() / float64(c.Nodes),
		"loads":         float64(res.loads) / float64(max(reads, 1)),
		"reads":         float64(reads),
		"read_errors":   float64(res.readErrors),
		"write_errors":  float64(res.writeErrors),
	}
	if res.local >= 0 && sys.local {
		v["local"] = float64(res.local) / float64(max(reads, 1))
	} else if !sys.local {
		v["local"] = 0
	}
	if l, ok := v["local"]; ok {
		// What neither the local tier nor the loader answered came from
		// Redis (a floor of 0: background loads count as loader calls).
		v["redis"] = max(0, 1-l-v["loads"])
	}
	if !math.IsNaN(res.commands) && ops > 0 {
		v["cmds_op"] = res.commands / ops
	}
	lat := make([]time.Duration, reads)
	for i, rd := range res.reads {
		lat[i] = rd.lat
	}
	slices.Sort(lat)
	latencies(v, "", lat)
	stale := make([]int, len(freshDeltas))
	long := 0
	for _, rd := range res.reads {
		for i, d := range freshDeltas {
			if rd.ver < res.truth.newest(rd.key, rd.at-d.Nanoseconds()) {
				stale[i]++
			}
		}
		if rd.ver < res.truth.newest(rd.key, rd.at-mixedLongStale.Nanoseconds()) {
			long++
		}
	}
	for i, d := range freshDeltas {
		f := 1 - float64(stale[i])/float64(max(reads, 1))
		v["fresh_"+deltaName(d)] = f
		v["nines_"+deltaName(d)] = nines(stale[i], reads)
	}
	v["stale_long"] = float64(long)
	note := sys.note
	if stale[0] == 0 && reads > 0 {
		note += "; no stale read at Δ=0, so the nines are a floor"
	}
	if res.readErrors+res.writeErrors > 0 {
		note += fmt.Sprintf("; %d read and %d write errors", res.readErrors, res.writeErrors)
	}
	if !sys.shared {
		note += "; a write reaches only its own node"
	}
	return Row{System: sys.name, Values: v, Note: note}
}

// nines is −log10 of the stale fraction; with none stale it is log10 of
// the reads, the most this many reads can show.
func nines(stale, reads int) float64 {
	if reads == 0 {
		return math.NaN()
	}
	if stale == 0 {
		return math.Log10(float64(reads))
	}
	return -math.Log10(float64(stale) / float64(reads))
}
