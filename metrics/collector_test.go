package metrics_test

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// fakeCache is a CacheSource with fixed Stats and L2 latency, so that every
// family the cache collector can emit is emitted.
type fakeCache struct{ s tiered.Stats }

func (f fakeCache) Stats() tiered.Stats { return f.s }

func (f fakeCache) L2Latency() map[string]tiered.Histogram {
	h := tiered.Histogram{Count: 1, Sum: 0.002, Buckets: map[float64]uint64{0.001: 0, 0.0025: 1}}
	return map[string]tiered.Histogram{"get": h, "write": h}
}

// fakeBus is a BusSource with fixed Stats.
type fakeBus struct{ s invalidation.Stats }

func (f fakeBus) Stats() invalidation.Stats { return f.s }

// DeliveryLag is written outside the library's packages, as a user's
// fake would be: the type it returns can be named.
func (f fakeBus) DeliveryLag() invalidation.Histogram {
	return invalidation.Histogram{Buckets: map[float64]uint64{0.001: 0}}
}

// emitted gathers every family cs emit: name -> type.
func emitted(t testing.TB, cs ...prometheus.Collector) map[string]dto.MetricType {
	t.Helper()
	mfs, err := register(t, cs...).Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]dto.MetricType{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetType()
	}
	return out
}

// TestDescribeMatchesCollect checks that each collector describes exactly
// the families it collects. The pedantic registry already fails a series
// without a described desc; counting catches a desc never collected.
func TestDescribeMatchesCollect(t *testing.T) {
	tests := []struct {
		name string
		give prometheus.Collector
	}{
		{"cache", metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}})},
		{"bus", metrics.NewBusCollector(fakeBus{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := make(chan *prometheus.Desc, 100)
			tt.give.Describe(ch)
			close(ch)
			if got, want := len(emitted(t, tt.give)), len(ch); got != want {
				t.Errorf("collected %d families, described %d", got, want)
			}
		})
	}
}

// TestLint runs promlint over both collectors, on fakes (every family) and
// on a real cache and bus.
func TestLint(t *testing.T) {
	check := func(t *testing.T, name string, c prometheus.Collector) {
		t.Helper()
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatalf("%s: CollectAndLint: %v", name, err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
	check(t, "fake cache", metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}}))
	check(t, "fake bus", metrics.NewBusCollector(fakeBus{}))
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newCache(t, s, nil)
		check(t, "cache", metrics.NewCacheCollector(c))
		check(t, "bus", metrics.NewBusCollector(c.Bus()))
	})
}

// TestTwoCachesOneRegistry registers two caches of different namespaces on
// one registry, with their shared bus once.
func TestTwoCachesOneRegistry(t *testing.T) {
	s := redistest.Mini(t)
	a := newCache(t, s, nil)
	b, err := tiered.New[int](tiered.Options{Redis: s.Client(t), Namespace: "n", Bus: a.Bus()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := scrape(t, register(t, metrics.NewCacheCollector(a), metrics.NewCacheCollector(b), metrics.NewBusCollector(a.Bus())))
	for _, id := range []string{l1MaxCost, `tiercache_l1_max_cost_bytes{namespace="n"}`, registrations} {
		if _, ok := got[id]; !ok {
			t.Errorf("series %s missing", id)
		}
	}
	if got[registrations] != 2 {
		t.Errorf("%s = %v, want 2", registrations, got[registrations])
	}
}

// TestDocListsEveryMetric checks that the package comment lists exactly
// the families the collectors emit.
func TestDocListsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "//\ttiercache_"); ok {
			name, _, _ := strings.Cut("tiercache_"+rest, " ")
			name, _, _ = strings.Cut(name, "{")
			listed[name] = true
		}
	}
	families := emitted(t,
		metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}}),
		metrics.NewBusCollector(fakeBus{}))
	for name := range families {
		if !listed[name] {
			t.Errorf("%s is emitted but not listed in doc.go", name)
		}
	}
	for name := range listed {
		if _, ok := families[name]; !ok {
			t.Errorf("%s is listed in doc.go but not emitted", name)
		}
	}
}
