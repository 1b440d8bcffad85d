package tiered_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// The truth store, tallies, fault schedule and report of
// TestConsistencyChecker (checker_test.go).

// truthStore is the checker's database: the committed version of each key
// and when each version's write was acknowledged. It is safe for
// concurrent use.
type truthStore struct {
	keys  []string       // by index; never changed
	index map[string]int // key to index; never changed

	mu       sync.Mutex // guards versions and acks
	versions []int      // committed version by key
	// acks[k][v] is when the write of version v of key k returned nil;
	// acks[k][0] is a placeholder (version 0 needs no write). Versions of a
	// key are acknowledged in order, so len(acks[k])-1 is the last one.
	acks [][]time.Time
}

func newTruthStore(n int) *truthStore {
	ts := &truthStore{index: make(map[string]int, n), versions: make([]int, n), acks: make([][]time.Time, n)}
	for k := range n {
		key := fmt.Sprintf("k%03d", k)
		ts.keys = append(ts.keys, key)
		ts.index[key] = k
		ts.acks[k] = []time.Time{{}}
	}
	return ts
}

// commit makes the next version of key k the truth and returns it.
func (ts *truthStore) commit(k int) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.versions[k]++
	return ts.versions[k]
}

// version returns the committed version of key k.
func (ts *truthStore) version(k int) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.versions[k]
}

// ack records that the write of version v of key k returned nil, now. The
// time is read under the lock, so a reader that checks after its read
// started sees every ack stamped before that start (see successor).
func (ts *truthStore) ack(k, v int) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if v != len(ts.acks[k]) {
		return false // acked out of order: a checker bug
	}
	ts.acks[k] = append(ts.acks[k], time.Now())
	return true
}

// successor returns when version r+1 of key k, the first version to
// replace r, was acknowledged (acked false if it was not, yet), and the
// committed version. Called after a read that started at ts returned r:
// an ack stamped at or before ts was recorded before this takes the lock,
// since ack stamps and records under the same lock.
func (ts *truthStore) successor(k, r int) (at time.Time, acked bool, committed int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	committed = ts.versions[k]
	if r >= 0 && r+1 < len(ts.acks[k]) {
		return ts.acks[k][r+1], true, committed
	}
	return time.Time{}, false, committed
}

func versionValue(v int) string { return "v" + strconv.Itoa(v) }

func parseVersion(s string) (int, bool) {
	rest, ok := strings.CutPrefix(s, "v")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(rest)
	return v, err == nil && v >= 0
}

// freshDeltas are the Δ of the freshness report.
func freshDeltas() [4]time.Duration {
	return [4]time.Duration{0, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}
}

// readTally counts one reader's reads; it is summed per node at the end.
type readTally struct {
	reads      int // calls
	values     int // values returned and checked
	misses     int // Get's ErrNotFound
	errors     int // calls that failed while the run was on
	cancelled  int // calls cut short by the end of the run
	violations int
	nearMisses int            // older than MaxStaleness, within the slack
	freshAt    [4]int         // values fresh within freshDeltas()[i]
	maxAge     time.Duration  // largest staleness age of a value read
	errSample  string         // the first error
	errKinds   map[string]int // errors by their text, up to a few kinds
}

// fresh counts a value whose staleness age is age (negative: nothing
// replaced it before the read started).
func (tl *readTally) fresh(age time.Duration) {
	for i, d := range freshDeltas() {
		if age < d {
			tl.freshAt[i]++
		}
	}
	tl.maxAge = max(tl.maxAge, age)
}

// countError counts a failed read, by operation and cause.
func (tl *readTally) countError(ctx context.Context, op string, err error) {
	if ctx.Err() != nil {
		tl.cancelled++
		return
	}
	tl.errors++
	if tl.errSample == "" {
		tl.errSample = op + ": " + err.Error()
	}
	if tl.errKinds == nil {
		tl.errKinds = map[string]int{}
	}
	kind := op + ": " + errorKind(err)
	if _, ok := tl.errKinds[kind]; ok || len(tl.errKinds) < 8 {
		tl.errKinds[kind]++
	}
}

// errorKind shortens an error to its cause (the last part, with no
// address or key in it), and says whether a shared load timed out.
func errorKind(err error) string {
	s := err.Error()
	kind := s
	if i := strings.LastIndex(s, ": "); i >= 0 {
		kind = s[i+2:]
	}
	if strings.Contains(s, "load timed out") {
		kind = "load timed out: " + kind
	}
	if len(kind) > 60 {
		kind = kind[:60]
	}
	return kind
}

func (tl *readTally) add(o *readTally) {
	tl.reads += o.reads
	tl.values += o.values
	tl.misses += o.misses
	tl.errors += o.errors
	tl.cancelled += o.cancelled
	tl.violations += o.violations
	tl.nearMisses += o.nearMisses
	for i := range tl.freshAt {
		tl.freshAt[i] += o.freshAt[i]
	}
	tl.maxAge = max(tl.maxAge, o.maxAge)
	if tl.errSample == "" {
		tl.errSample = o.errSample
	}
	for k, n := range o.errKinds {
		if tl.errKinds == nil {
			tl.errKinds = map[string]int{}
		}
		tl.errKinds[k] += n
	}
}

// writeTally counts one writer's writes.
type writeTally struct {
	acked       int // versions acknowledged
	deletes     int // of which by Delete
	errors      int // calls that returned an error (each retried)
	unacked     int // a version left unacknowledged when the run ended
	bookkeeping int // the truth held another version than the writer's
}

// violation is one value stale beyond the bound, or corrupt.
type violation struct {
	Node    int           `json:"node"`
	Op      string        `json:"op"`
	Key     string        `json:"key"`
	Value   string        `json:"value"`
	Got     int           `json:"got_version"`
	Acked   int           `json:"acked_version,omitempty"`
	Writer  int           `json:"writer_node"`
	AckedAt time.Duration `json:"acked_at_ns,omitempty"` // from the start of the load
	ReadAt  time.Duration `json:"read_at_ns"`            // from the start of the load
	Age     time.Duration `json:"age_ns,omitempty"`      // ReadAt - AckedAt
	Latency time.Duration `json:"latency_ns"`
	Corrupt string        `json:"corrupt,omitempty"`
}

func (v violation) String() string {
	if v.Corrupt != "" {
		return fmt.Sprintf("node %d %s(%s) = %q at t=%.3fs: %s", v.Node, v.Op, v.Key, v.Value, v.ReadAt.Seconds(), v.Corrupt)
	}
	return fmt.Sprintf("node %d %s(%s) = v%d, read started t=%.3fs (took %v); v%d was acked by node %d at t=%.3fs, %v before the read started",
		v.Node, v.Op, v.Key, v.Got, v.ReadAt.Seconds(), v.Latency.Round(time.Microsecond),
		v.Acked, v.Writer, v.AckedAt.Seconds(), v.Age.Round(time.Microsecond))
}

// faultEvent is one fault of the schedule.
type faultEvent struct {
	At     time.Duration `json:"at_ns"` // from the start of the load
	Kind   string        `json:"kind"`
	Node   int           `json:"node"` // -1: the whole server
	Detail string        `json:"detail,omitempty"`
	Lasted time.Duration `json:"lasted_ns,omitempty"`
}

func (f faultEvent) String() string {
	where := "all nodes"
	if f.Node >= 0 {
		where = fmt.Sprintf("node %d", f.Node)
	}
	s := fmt.Sprintf("t=%7.3fs %-15s %-9s", f.At.Seconds(), f.Kind, where)
	if f.Lasted > 0 {
		s += fmt.Sprintf(" for %v", f.Lasted.Round(time.Millisecond))
	}
	if f.Detail != "" {
		s += " " + f.Detail
	}
	return s
}

// faultKinds are the faults the schedule draws from, uniformly. Requests
// held in the network (delay-requests) land after writes that came later:
// the write fence and the lease rules keep that from undoing a write on a
// single server, but a Ring's writes are not fenced, so the ring variant
// does without it.
func faultKinds(v checkerVariant) []string {
	kinds := []string{"kill-pubsub", "kill-normal", "restart", "delay-replies", "blackhole", "reset-all", "drop-next-reply"}
	if !v.ring {
		kinds = append(kinds, "delay-requests")
	}
	return kinds
}

// plannedFault is one fault of the schedule, drawn from the seed before
// the run so that a replay injects the same faults at the same offsets.
type plannedFault struct {
	at    time.Duration // from the start of the load
	kind  string
	node  int
	delay time.Duration // delay-replies: by how much
	dur   time.Duration // delay-replies, blackhole: how long
}

// planFaults draws a fault every 1-2s after the previous one ends, until
// too little of the load is left for the longest fault to end in it. Every
// fault draws the same numbers, whatever its kind.
func planFaults(rng *rand.Rand, load time.Duration, nodes int, kinds []string) []plannedFault {
	const longest = 1500 * time.Millisecond // blackhole
	var plan []plannedFault
	at := time.Duration(0)
	for {
		at += time.Second + randDuration(rng, time.Second)
		f := plannedFault{
			at:    at,
			kind:  kinds[rng.IntN(len(kinds))],
			node:  rng.IntN(nodes),
			delay: 50*time.Millisecond + randDuration(rng, 250*time.Millisecond),
		}
		blackhole := 500*time.Millisecond + randDuration(rng, time.Second)
		delayFor := 500*time.Millisecond + randDuration(rng, 500*time.Millisecond)
		switch f.kind {
		case "blackhole":
			f.dur = blackhole
		case "delay-replies", "delay-requests":
			f.dur = delayFor
		}
		if at+longest+500*time.Millisecond > load {
			return plan
		}
		plan = append(plan, f)
		at += f.dur
	}
}

// faultSchedule injects the planned faults, each at its time or as soon as
// the previous one is over (a restart takes what it takes). It runs in the
// test goroutine: the redistest fault helpers may call t.Fatal.
func (ck *checker) faultSchedule(t *testing.T, plan []plannedFault) {
	t.Helper()
	nextProgress := 30 * time.Second
	for _, f := range plan {
		if d := f.at - time.Since(ck.start); d > 0 {
			wait(d)
		}
		ev := ck.fault(t, f)
		ck.faults = append(ck.faults, ev)
		t.Logf("fault %v", ev)
		if ck.cfg.duration > time.Minute && time.Since(ck.start) > nextProgress {
			nextProgress += 30 * time.Second
			t.Logf("progress t=%.0fs: %d values checked, %d violations", time.Since(ck.start).Seconds(),
				ck.values.Load(), ck.violations.Load())
		}
	}
}

// fault injects f and, if it lasts, waits for its end and undoes it.
func (ck *checker) fault(t *testing.T, f plannedFault) faultEvent {
	t.Helper()
	start := time.Now()
	ev := faultEvent{At: start.Sub(ck.start), Kind: f.kind, Node: -1}
	ps := ck.nodes[f.node].proxies
	switch f.kind {
	case "kill-pubsub":
		n := 0
		for _, s := range ck.srvs {
			n += s.KillPubSubClients(t)
		}
		ev.Detail = fmt.Sprintf("(%d connections)", n)
	case "kill-normal":
		// SKIPME yes spares the admin connection sending the command.
		n := int64(0)
		for _, a := range ck.admins {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			k, err := a.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Result()
			cancel()
			n += k
			if err != nil {
				ev.Detail = fmt.Sprintf("(CLIENT KILL failed: %v)", err)
			}
		}
		if ev.Detail == "" {
			ev.Detail = fmt.Sprintf("(%d connections)", n)
		}
	case "restart":
		ck.srvs[0].Restart(t)
		ev.Lasted = time.Since(start)
	case "delay-replies":
		ev.Node, ev.Detail, ev.Lasted = f.node, fmt.Sprintf("by %v", f.delay.Round(time.Millisecond)), f.dur
		for _, p := range ps {
			p.DelayReplies(f.delay)
		}
		wait(f.dur)
		for _, p := range ps {
			p.DelayReplies(0)
		}
	case "delay-requests":
		ev.Node, ev.Detail, ev.Lasted = f.node, fmt.Sprintf("by %v", f.delay.Round(time.Millisecond)), f.dur
		for _, p := range ps {
			p.DelayRequests(f.delay)
		}
		wait(f.dur)
		for _, p := range ps {
			p.DelayRequests(0)
		}
	case "blackhole":
		ev.Node, ev.Lasted = f.node, f.dur
		for _, p := range ps {
			p.Blackhole(true)
		}
		wait(f.dur)
		for _, p := range ps {
			p.Blackhole(false)
		}
	case "reset-all":
		ev.Node = f.node
		n := 0
		for _, p := range ps {
			n += p.ResetAll()
		}
		ev.Detail = fmt.Sprintf("(%d connections)", n)
	case "drop-next-reply":
		ev.Node = f.node
		ps[0].DropNextReply()
	default:
		t.Fatalf("unknown fault %q", f.kind)
	}
	return ev
}

func randDuration(rng *rand.Rand, n time.Duration) time.Duration {
	return time.Duration(rng.Int64N(int64(n)))
}

// wait lets d pass: a fault window or the gap between faults, not
// synchronization.
func wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// stallMonitor measures how late the process runs a ticker of its own. A
// violation next to a long stall points at a starved machine (the bus's
// watchdog timer could not run in time either), one without at the
// protocol. It is safe for concurrent use.
type stallMonitor struct {
	mu     sync.Mutex // guards the fields below
	stalls []stall    // the first maxStalls over stallThreshold
	count  int
	worst  time.Duration
}

// stall is a tick that came late by Late, due at At (from the start of the
// load).
type stall struct {
	At   time.Duration `json:"at_ns"`
	Late time.Duration `json:"late_ns"`
}

const (
	stallTick      = 10 * time.Millisecond
	stallThreshold = 50 * time.Millisecond
	maxStalls      = 1000
)

// watch ticks until ctx ends and records the late ticks.
func (m *stallMonitor) watch(ctx context.Context, start time.Time) {
	tick := time.NewTicker(stallTick)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// The time read here, not the tick's: a late receiver is the
			// stall being measured.
			now := time.Now()
			late := now.Sub(last) - stallTick
			last = now
			if late < stallThreshold {
				continue
			}
			m.mu.Lock()
			m.count++
			m.worst = max(m.worst, late)
			if len(m.stalls) < maxStalls {
				m.stalls = append(m.stalls, stall{At: now.Sub(start) - late, Late: late})
			}
			m.mu.Unlock()
		}
	}
}

func (m *stallMonitor) snapshot() (stalls []stall, count int, worst time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]stall(nil), m.stalls...), m.count, m.worst
}

// checkerReport is the run's outcome, printed as a table and written as
// JSON.
type checkerReport struct {
	Seed         uint64  `json:"seed"`
	Nodes        int     `json:"nodes"`
	Keys         int     `json:"keys"`
	LoadSeconds  float64 `json:"load_seconds"`
	MaxStaleness string  `json:"max_staleness"`
	Slack        string  `json:"slack"`

	Reads          int     `json:"reads"`
	ReadsPerSecond float64 `json:"reads_per_second"`
	Values         int     `json:"values"`
	Misses         int     `json:"misses"`
	ReadErrors     int     `json:"read_errors"`

	AckedWrites          int     `json:"acked_writes"`
	AckedPerNodePerSec   float64 `json:"acked_writes_per_node_per_second"`
	WriteErrors          int     `json:"write_errors"`
	BookkeepingErrors    int     `json:"bookkeeping_errors"`
	Violations           int     `json:"violations"`
	NearMisses           int     `json:"near_misses"`
	MaxStalenessSeenMsec float64 `json:"max_staleness_seen_ms"`

	Freshness       []freshnessRow `json:"freshness"`
	PerNode         []nodeReport   `json:"per_node"`
	Faults          []faultEvent   `json:"faults"`
	FirstViolations []violation    `json:"first_violations"`
	NodeLog         []string       `json:"node_log"`
	// Stalls are the ticks of a 10ms ticker that came 50ms or more late.
	Stalls       []stall `json:"stalls"`
	StallCount   int     `json:"stall_count"`
	WorstStallMs float64 `json:"worst_stall_ms"`
}

type freshnessRow struct {
	Delta    string  `json:"delta"`
	Fresh    int     `json:"fresh"`
	Fraction float64 `json:"fraction"`
	Nines    string  `json:"nines"`
}

type nodeReport struct {
	Node           int            `json:"node"`
	Reads          int            `json:"reads"`
	Values         int            `json:"values"`
	Misses         int            `json:"misses"`
	ReadErrors     int            `json:"read_errors"`
	ReadErrorKinds map[string]int `json:"read_error_kinds,omitempty"`
	ReadErrorFirst string         `json:"read_error_first,omitempty"`
	AckedWrites    int            `json:"acked_writes"`
	Deletes        int            `json:"deletes"`
	WriteErrors    int            `json:"write_errors"`
	Violations     int            `json:"violations"`
	NearMisses     int            `json:"near_misses"`
	L1Hits         uint64         `json:"l1_hits"`
	L1Bypassed     uint64         `json:"l1_bypassed"`
	Clears         uint64         `json:"clears"`
	Reconnects     uint64         `json:"reconnects"`
	L2Errors       uint64         `json:"l2_errors"`
	Loads          uint64         `json:"loads"`
	LeaseFallbacks uint64         `json:"lease_fallbacks"`
	BypassSeconds  float64        `json:"bypass_seconds"`
}

func (ck *checker) report() checkerReport {
	secs := ck.load.Seconds()
	rep := checkerReport{
		Seed: ck.cfg.seed, Nodes: ck.cfg.nodes, Keys: ck.cfg.keys, LoadSeconds: secs,
		MaxStaleness: ck.cfg.maxStaleness.String(), Slack: ck.cfg.slack.String(),
		Faults: ck.faults,
	}
	var all readTally
	for _, nd := range ck.nodes {
		var st tiered.Stats // the node's caches' counters, summed; the bus's are shared
		for _, c := range nd.caches {
			cs := c.Stats()
			st.L1.Hits += cs.L1.Hits
			st.L1Bypassed += cs.L1Bypassed
			st.Clears += cs.Clears
			st.L2Errors += cs.L2Errors
			st.Loads += cs.Loads
			st.LeaseFallbacks += cs.LeaseFallbacks
			st.Bus = cs.Bus
		}
		r, w := &nd.reads, &nd.writes
		all.add(r)
		rep.AckedWrites += w.acked
		rep.WriteErrors += w.errors
		rep.BookkeepingErrors += w.bookkeeping
		rep.PerNode = append(rep.PerNode, nodeReport{
			Node: nd.id, Reads: r.reads, Values: r.values, Misses: r.misses,
			ReadErrors: r.errors, ReadErrorKinds: r.errKinds, ReadErrorFirst: r.errSample,
			AckedWrites: w.acked, Deletes: w.deletes, WriteErrors: w.errors,
			Violations: r.violations, NearMisses: r.nearMisses,
			L1Hits: st.L1.Hits, L1Bypassed: st.L1Bypassed, Clears: st.Clears,
			Reconnects: st.Bus.Reconnects, L2Errors: st.L2Errors, Loads: st.Loads,
			LeaseFallbacks: st.LeaseFallbacks, BypassSeconds: time.Duration(st.Bus.BypassNanos).Seconds(),
		})
	}
	rep.Reads, rep.Values, rep.Misses, rep.ReadErrors = all.reads, all.values, all.misses, all.errors
	rep.Violations, rep.NearMisses = all.violations, all.nearMisses
	rep.ReadsPerSecond = float64(all.reads) / secs
	rep.AckedPerNodePerSec = float64(rep.AckedWrites) / float64(ck.cfg.nodes) / secs
	rep.MaxStalenessSeenMsec = float64(max(all.maxAge, 0)) / float64(time.Millisecond)
	for i, d := range freshDeltas() {
		f := 1.0
		if all.values > 0 {
			f = float64(all.freshAt[i]) / float64(all.values)
		}
		rep.Freshness = append(rep.Freshness, freshnessRow{Delta: d.String(), Fresh: all.freshAt[i], Fraction: f, Nines: nines(f)})
	}
	ck.mu.Lock()
	rep.FirstViolations = append([]violation(nil), ck.first...)
	ck.mu.Unlock()
	rep.NodeLog, _ = ck.logs.snapshot()
	var worst time.Duration
	rep.Stalls, rep.StallCount, worst = ck.stalls.snapshot()
	rep.WorstStallMs = float64(worst) / float64(time.Millisecond)
	return rep
}

// nines is -log10(1-f), "inf" when f is 1.
func nines(f float64) string {
	if f >= 1 {
		return "inf"
	}
	return strconv.FormatFloat(-math.Log10(1-f), 'f', 2, 64)
}

func (ck *checker) logReport(t *testing.T, rep checkerReport) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "consistency checker report: seed=%d nodes=%d keys=%d load=%.1fs MaxStaleness=%s slack=%s\n",
		rep.Seed, rep.Nodes, rep.Keys, rep.LoadSeconds, rep.MaxStaleness, rep.Slack)
	counts := map[string]int{}
	for _, f := range rep.Faults {
		counts[f.Kind]++
	}
	fmt.Fprintf(&b, "faults: %d:", len(rep.Faults))
	for _, k := range faultKinds(ck.v) {
		fmt.Fprintf(&b, " %s=%d", k, counts[k])
	}
	b.WriteString("\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\treads\treads/s\tvalues\tmisses\tread errs\tacked\tacked/s\twrite errs\tviolations\tnear\tL1 hits\tbypassed\tclears\treconn\tbypass s\t")
	for _, n := range rep.PerNode {
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%d\t%d\t%d\t%d\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t\n",
			n.Node, n.Reads, float64(n.Reads)/rep.LoadSeconds, n.Values, n.Misses, n.ReadErrors,
			n.AckedWrites, float64(n.AckedWrites)/rep.LoadSeconds, n.WriteErrors, n.Violations, n.NearMisses,
			n.L1Hits, n.L1Bypassed, n.Clears, n.Reconnects, n.BypassSeconds)
	}
	fmt.Fprintf(tw, "all\t%d\t%.1f\t%d\t%d\t%d\t%d\t%.1f/node\t%d\t%d\t%d\t\t\t\t\t\t\n",
		rep.Reads, rep.ReadsPerSecond, rep.Values, rep.Misses, rep.ReadErrors,
		rep.AckedWrites, rep.AckedPerNodePerSec, rep.WriteErrors, rep.Violations, rep.NearMisses)
	_ = tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fresh within Δ\tvalues\tfraction\tnines\t")
	for _, f := range rep.Freshness {
		fmt.Fprintf(tw, "%s\t%d\t%.6f\t%s\t\n", f.Delta, f.Fresh, f.Fraction, f.Nines)
	}
	within := 1.0
	if rep.Values > 0 {
		within = 1 - float64(rep.Violations)/float64(rep.Values)
	}
	fmt.Fprintf(tw, "bound %v+%v\t%d\t%.6f\t%s\t\n", ck.cfg.maxStaleness, ck.cfg.slack, rep.Values-rep.Violations, within, nines(within))
	_ = tw.Flush()
	fmt.Fprintf(&b, "\noldest value served: %.1fms after its replacement was acked; %d values older than MaxStaleness within the slack; %d bookkeeping errors\n",
		rep.MaxStalenessSeenMsec, rep.NearMisses, rep.BookkeepingErrors)
	fmt.Fprintf(&b, "process stalls (a 10ms tick %v or more late): %d, worst %.1fms\n", stallThreshold, rep.StallCount, rep.WorstStallMs)
	for _, n := range rep.PerNode {
		if len(n.ReadErrorKinds) > 0 {
			fmt.Fprintf(&b, "node %d read errors: %v; first: %s\n", n.Node, n.ReadErrorKinds, n.ReadErrorFirst)
		}
	}
	t.Log(b.String())
	for i, v := range rep.FirstViolations {
		t.Logf("violation %d: %v", i+1, v)
		for _, f := range rep.Faults {
			if f.At <= v.ReadAt && f.At+f.Lasted >= v.ReadAt-3*time.Second {
				t.Logf("    fault before it: %v", f)
			}
		}
		for _, s := range rep.Stalls {
			if s.At+s.Late >= v.AckedAt && s.At <= v.ReadAt {
				t.Logf("    process stall between the ack and the read: t=%.3fs, a 10ms tick %v late", s.At.Seconds(), s.Late.Round(time.Millisecond))
			}
		}
	}
	if rep.BookkeepingErrors > 0 {
		t.Errorf("%d checker bookkeeping errors: a writer found its key at another version", rep.BookkeepingErrors)
	}
}

func writeReport(path string, rep checkerReport) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
