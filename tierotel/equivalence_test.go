package tierotel_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tierotel"
)

// promName is the name an OpenTelemetry Prometheus exporter gives an
// instrument: dots become underscores, the unit becomes a suffix (an
// annotation such as {key} is dropped), and counters end in _total.
func promName(m metricdata.Metrics) string {
	name := strings.ReplaceAll(m.Name, ".", "_")
	if suffix := map[string]string{"By": "_bytes", "s": "_seconds"}[m.Unit]; suffix != "" && !strings.HasSuffix(name, suffix) {
		name += suffix
	}
	if sum, ok := m.Data.(metricdata.Sum[float64]); ok && sum.IsMonotonic {
		name += "_total"
	}
	return name
}

// TestEquivalentToPrometheus: every family the Prometheus collectors emit
// has an OpenTelemetry instrument of the same translated name, kind and
// attribute names, but the bus's delivery lag (see the package comment);
// and every instrument but the lease-wait histogram has a family.
func TestEquivalentToPrometheus(t *testing.T) {
	s := redistest.Mini(t)
	st := newSetup(t, s)
	reg, err := tierotel.RegisterCache(st.cache, st.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	busReg, err := tierotel.RegisterBus(st.cache.Bus(), st.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer busReg.Unregister()
	// A load and a Get, so that the histograms have points.
	if _, err := st.cache.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	_, _ = st.cache.Get(context.Background(), "absent")

	preg := prometheus.NewRegistry()
	preg.MustRegister(metrics.NewCacheCollector(st.cache, metrics.Options{}), metrics.NewBusCollector(st.cache.Bus(), metrics.Options{}))
	mfs, err := preg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	prom := map[string][]string{} // family -> sorted label names
	for _, mf := range mfs {
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		slices.Sort(labels)
		prom[mf.GetName()] = labels
	}

	otel := map[string][]string{}
	for _, sm := range collect(t, st.reader).ScopeMetrics {
		for _, m := range sm.Metrics {
			otel[promName(m)] = attrNames(m)
		}
	}
	notInOTel := map[string]bool{"tiercache_invalidation_delivery_lag_seconds": true}
	notInProm := map[string]bool{"tiercache_lease_wait_duration_seconds": true}
	for _, name := range slices.Sorted(maps.Keys(prom)) {
		got, ok := otel[name]
		switch {
		case notInOTel[name]:
		case !ok:
			t.Errorf("Prometheus family %s has no OpenTelemetry instrument", name)
		case !slices.Equal(got, prom[name]):
			t.Errorf("%s: OpenTelemetry attributes %v, Prometheus labels %v", name, got, prom[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(otel)) {
		if _, ok := prom[name]; !ok && !notInProm[name] {
			t.Errorf("OpenTelemetry instrument %s has no Prometheus family", name)
		}
	}
}

func attrNames(m metricdata.Metrics) []string {
	var names []string
	add := func(kvs []string) {
		for _, k := range kvs {
			if !slices.Contains(names, k) {
				names = append(names, k)
			}
		}
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			add(slices.Collect(maps.Keys(attrMap(p.Attributes.ToSlice()))))
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			add(slices.Collect(maps.Keys(attrMap(p.Attributes.ToSlice()))))
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			add(slices.Collect(maps.Keys(attrMap(p.Attributes.ToSlice()))))
		}
	}
	slices.Sort(names)
	return names
}
