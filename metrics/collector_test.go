package metrics_test

import (
	"errors"
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
		{"cache", metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}}, metrics.Options{})},
		{"bus", metrics.NewBusCollector(fakeBus{}, metrics.Options{})},
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
	check(t, "fake cache", metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}}, metrics.Options{}))
	check(t, "fake bus", metrics.NewBusCollector(fakeBus{}, metrics.Options{}))
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newCache(t, s, nil)
		check(t, "cache", metrics.NewCacheCollector(c, metrics.Options{}))
		check(t, "bus", metrics.NewBusCollector(c.Bus(), metrics.Options{}))
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
	got := scrape(t, register(t, metrics.NewCacheCollector(a, metrics.Options{}), metrics.NewCacheCollector(b, metrics.Options{}), metrics.NewBusCollector(a.Bus(), metrics.Options{})))
	for _, id := range []string{l1MaxCost, `tiercache_l1_max_cost_bytes{cache="n"}`, registrations} {
		if _, ok := got[id]; !ok {
			t.Errorf("series %s missing", id)
		}
	}
	if got[registrations] != 2 {
		t.Errorf("%s = %v, want 2", registrations, got[registrations])
	}
}

// TestSameNamespaceTwice: two caches of one namespace on one registry are
// refused by default (their series would be duplicates), and told apart by
// Options.Cache.
func TestSameNamespaceTwice(t *testing.T) {
	s := redistest.Mini(t)
	a := newCache(t, s, nil)
	b, err := tiered.New[int](tiered.Options{Redis: s.Client(t), Namespace: "m", Bus: a.Bus()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	reg := prometheus.NewRegistry()
	if err := reg.Register(metrics.NewCacheCollector(a, metrics.Options{})); err != nil {
		t.Fatal(err)
	}
	err = reg.Register(metrics.NewCacheCollector(b, metrics.Options{}))
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second collector with cache=m: Register = %v, want an AlreadyRegisteredError", err)
	}
	if err := reg.Register(metrics.NewCacheCollector(b, metrics.Options{Cache: "m-ints"})); err != nil {
		t.Errorf("second collector with cache=m-ints: Register = %v, want nil", err)
	}
	got := scrape(t, reg)
	for _, id := range []string{l1MaxCost, `tiercache_l1_max_cost_bytes{cache="m-ints"}`} {
		if _, ok := got[id]; !ok {
			t.Errorf("series %s missing", id)
		}
	}
}

// TestPrefix: Options.Prefix replaces tiercache in every name.
func TestPrefix(t *testing.T) {
	families := emitted(t,
		metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}}, metrics.Options{Prefix: "shop_cache"}),
		metrics.NewBusCollector(fakeBus{}, metrics.Options{Prefix: "shop_cache"}))
	if _, ok := families["shop_cache_requests_total"]; !ok {
		t.Errorf("no shop_cache_requests_total among %d families", len(families))
	}
	if _, ok := families["shop_cache_invalidation_usable"]; !ok {
		t.Errorf("no shop_cache_invalidation_usable among %d families", len(families))
	}
	for name := range families {
		if !strings.HasPrefix(name, "shop_cache_") {
			t.Errorf("family %s does not start with the prefix", name)
		}
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
		metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}}, metrics.Options{}),
		metrics.NewBusCollector(fakeBus{}, metrics.Options{}))
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
