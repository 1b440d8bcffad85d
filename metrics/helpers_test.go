package metrics_test

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// testOptions are fast-moving settings: short heartbeats so that liveness
// is proven quickly, and no jitter so TTLs are exact.
func testOptions(t testing.TB, s *redistest.Server) tiered.Options {
	return tiered.Options{
		Redis:             s.Client(t),
		Namespace:         "m",
		HeartbeatInterval: 50 * time.Millisecond,
		MaxStaleness:      time.Second,
		DisableJitter:     true,
	}
}

// newCache makes a cache with its own client and bus, as a separate process
// would have, waits until its bus is usable, and closes it at cleanup.
func newCache(t testing.TB, s *redistest.Server, mod func(*tiered.Options)) *tiered.Cache[string] {
	t.Helper()
	o := testOptions(t, s)
	if mod != nil {
		mod(&o)
	}
	c, err := tiered.New[string](o)
	if err != nil {
		t.Fatalf("tiered.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	eventually(t, "bus usable", c.Bus().Usable)
	return c
}

// eventually polls cond every millisecond until it holds, failing the test
// after 5s. Polling is how a test outside the packages waits for a bus
// delivery or a ristretto admission: neither signals anyone outside.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 5s", what)
		}
		time.Sleep(time.Millisecond) // poll interval, with the deadline above
	}
}

// samples maps each series of a scrape, written name{label="value",...}
// with labels sorted, to its value. A histogram gives three entries: its
// name with the suffixes _count, _sum and _bucket (the +Inf bucket is not
// listed; it equals _count).
type samples map[string]float64

// scrape gathers g, failing the test on a gathering error (a pedantic
// registry reports series that do not match the described descs).
func scrape(t testing.TB, g prometheus.Gatherer) samples {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := samples{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			id := seriesID(mf.GetName(), m.GetLabel())
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[id] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[id] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out[seriesID(mf.GetName()+"_count", m.GetLabel())] = float64(h.GetSampleCount())
				out[seriesID(mf.GetName()+"_sum", m.GetLabel())] = h.GetSampleSum()
			default:
				t.Fatalf("%s: unexpected type %v", mf.GetName(), mf.GetType())
			}
		}
	}
	return out
}

func seriesID(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// A want is what one series must show after a step, relative to before.
type want struct {
	delta float64 // exact change, unless atLeast
	// atLeast makes delta a lower bound: for counts an implementation may
	// legitimately raise more than once (bytes, polls, re-checks of L1).
	atLeast bool
	// any accepts every change: gauges and sums that depend on timing.
	any bool
}

func exactly(d float64) want { return want{delta: d} }
func atLeast(d float64) want { return want{delta: d, atLeast: true} }

var anyChange = want{any: true}

// expectDelta checks every series of after against before: those named in
// wants change as stated, every other one stays the same (histogram sums
// excepted).
func expectDelta(t testing.TB, step string, before, after samples, wants map[string]want) {
	t.Helper()
	for id := range wants {
		if _, ok := after[id]; !ok {
			t.Errorf("%s: series %s not emitted", step, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(after)) {
		d := after[id] - before[id]
		w, named := wants[id]
		switch {
		case w.any, !named && strings.HasSuffix(id, "_sum") || strings.Contains(id, "_sum{"):
			// A histogram's sum moves with its count, by durations no
			// test can predict; the count is checked instead.
		case !named && d != 0:
			t.Errorf("%s: %s changed by %v, want no change", step, id, d)
		case named && w.atLeast && d < w.delta:
			t.Errorf("%s: %s changed by %v, want at least %v", step, id, d, w.delta)
		case named && !w.atLeast && math.Abs(d-w.delta) > 1e-9:
			t.Errorf("%s: %s changed by %v, want %v", step, id, d, w.delta)
		}
	}
}

// Series names of the cache collector for namespace "m".
const (
	l1Hit       = `tiercache_requests_total{cache="m",result="hit",tier="l1"}`
	l1Miss      = `tiercache_requests_total{cache="m",result="miss",tier="l1"}`
	l1Bypass    = `tiercache_requests_total{cache="m",result="bypass",tier="l1"}`
	l2Hit       = `tiercache_requests_total{cache="m",result="hit",tier="l2"}`
	l2Miss      = `tiercache_requests_total{cache="m",result="miss",tier="l2"}`
	l2Error     = `tiercache_requests_total{cache="m",result="error",tier="l2"}`
	loaderHit   = `tiercache_requests_total{cache="m",result="hit",tier="loader"}`
	loaderMiss  = `tiercache_requests_total{cache="m",result="miss",tier="loader"}`
	loaderError = `tiercache_requests_total{cache="m",result="error",tier="loader"}`

	l1Entries    = `tiercache_l1_entries{cache="m"}`
	l1Cost       = `tiercache_l1_cost_bytes{cache="m"}`
	l1MaxCost    = `tiercache_l1_max_cost_bytes{cache="m"}`
	l1Sets       = `tiercache_l1_sets_total{cache="m"}`
	l1Rejected   = `tiercache_l1_sets_rejected_total{cache="m"}`
	l1Evictions  = `tiercache_l1_evictions_total{cache="m"}`
	l1StaleFills = `tiercache_l1_stale_fills_total{cache="m"}`
	l1Stamp      = `tiercache_l1_stamp_rejections_total{cache="m"}`
	l1Collisions = `tiercache_l1_epoch_collisions_total{cache="m"}`
	l1Invalid    = `tiercache_l1_invalidated_keys_total{cache="m"}`
	l1Clears     = `tiercache_l1_clears_total{cache="m"}`

	l2RoundTrips = `tiercache_l2_round_trips_total{cache="m"}`
	l2RTErrors   = `tiercache_l2_round_trip_errors_total{cache="m"}`
	l2Decode     = `tiercache_l2_decode_errors_total{cache="m"}`
	l2Read       = `tiercache_l2_read_bytes_total{cache="m"}`
	l2Written    = `tiercache_l2_written_bytes_total{cache="m"}`

	loads          = `tiercache_loads_total{cache="m"}`
	loadCount      = `tiercache_load_duration_seconds_count{cache="m"}`
	loadErrors     = `tiercache_load_errors_total{cache="m"}`
	panics         = `tiercache_load_panics_total{cache="m"}`
	dedupes        = `tiercache_load_dedupes_total{cache="m"}`
	leaseGrants    = `tiercache_lease_grants_total{cache="m"}`
	leaseWaits     = `tiercache_lease_waits_total{cache="m"}`
	leaseFallbacks = `tiercache_lease_fallbacks_total{cache="m"}`
	fillsRefused   = `tiercache_fills_refused_total{cache="m"}`
	oversize       = `tiercache_oversize_values_total{cache="m"}`
	writes         = `tiercache_writes_total{cache="m"}`
	writeErrors    = `tiercache_write_errors_total{cache="m"}`
	peerInvalid    = `tiercache_peer_invalidated_keys_total{cache="m"}`
)

// l2Op names the L2 latency histogram's count for one kind of call.
func l2Op(op string) string {
	return `tiercache_l2_round_trip_duration_seconds_count{cache="m",op="` + op + `"}`
}

// hasL2Latency reports whether c exposes its L2 latency histograms, which
// the cache collector exports only then.
func hasL2Latency(c metrics.CacheSource) bool {
	_, ok := c.(interface {
		L2Latency() map[string]tiered.Histogram
	})
	return ok
}

// expectL2Latency drops the L2 latency series from wants unless c exports
// them.
func expectL2Latency(c metrics.CacheSource, wants map[string]want) map[string]want {
	if !hasL2Latency(c) {
		for id := range wants {
			if strings.HasPrefix(id, "tiercache_l2_round_trip_duration_seconds") {
				delete(wants, id)
			}
		}
	}
	return wants
}

// stepper runs operations on a cache and checks what each changed in a
// scrape of reg.
type stepper struct {
	t   *testing.T
	c   metrics.CacheSource
	reg *prometheus.Registry
}

func (s stepper) step(name string, op func(), wants map[string]want) {
	s.t.Helper()
	before := scrape(s.t, s.reg)
	op()
	expectDelta(s.t, name, before, scrape(s.t, s.reg), expectL2Latency(s.c, wants))
}

// register returns a pedantic registry (it checks every collected series
// against the described descs) with collectors on it.
func register(t testing.TB, cs ...prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatalf("Register: %v", err)
		}
	}
	return reg
}
