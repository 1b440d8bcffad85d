package tierotel_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tierotel"
)

// setup makes in-memory span and metric exporters, a tracer on them, and a
// cache (namespace "otel") that uses it.
type setup struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	opts   tierotel.Options
	cache  *tiered.Cache[string]
}

func newSetup(t *testing.T, s *redistest.Server) *setup {
	t.Helper()
	st := &setup{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(st.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(st.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	st.opts = tierotel.Options{TracerProvider: tp, MeterProvider: mp}
	tracer, err := tierotel.NewTracer(st.opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[string](tiered.Options{
		Redis: s.Client(t), Namespace: "otel", Tracer: tracer,
		HeartbeatInterval: 50 * time.Millisecond, MaxStaleness: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	st.cache = c
	return st
}

// ended lists the names of the spans that ended since the last call.
func (st *setup) ended(from int) ([]sdktrace.ReadOnlySpan, int) {
	all := st.spans.Ended()
	return all[from:], len(all)
}

func TestSpans(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newSetup(t, s)
		ctx := context.Background()
		const secret = "user-4711@example.com" // a key that is personal data
		var loaderSpan bool
		_, err := st.cache.GetOrLoad(ctx, secret, func(ctx context.Context, _ string) (string, error) {
			loaderSpan = traceIsRecording(ctx)
			return "v", nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !loaderSpan {
			t.Errorf("the loader's context carries no recording span")
		}
		spans, n := st.ended(0)
		var names []string
		for _, sp := range spans {
			names = append(names, sp.Name())
			attrs := attrMap(sp.Attributes())
			if attrs["tiercache.cache"] != "otel" || attrs["tiercache.keys"] != "1" {
				t.Errorf("span %s attributes %v, want tiercache.cache=otel tiercache.keys=1", sp.Name(), attrs)
			}
			for k, v := range attrs {
				if strings.Contains(v, secret) {
					t.Errorf("span %s attribute %s carries the key: %q", sp.Name(), k, v)
				}
			}
		}
		if want := []string{"tiercache.l2.lease", "tiercache.load", "tiercache.l2.fill"}; !slices.Equal(names, want) {
			t.Errorf("a miss made spans %q, want %q", names, want)
		}

		// L1 hits make no span.
		waitL1(t, st.cache, secret)
		_, n = st.ended(n)
		for range 100 {
			if _, err := st.cache.Get(ctx, secret); err != nil {
				t.Fatal(err)
			}
		}
		if spans, _ := st.ended(n); len(spans) != 0 {
			t.Errorf("100 L1 hits made %d spans, want 0", len(spans))
		}

		// A failed batch load: an Error span with the key count, no text.
		_, n = st.ended(0)
		_, err = st.cache.GetOrLoadMany(ctx, []string{"a", "b", "c"}, func(context.Context, []string) (map[string]string, error) {
			return nil, errors.New("db down for " + secret)
		})
		if err == nil {
			t.Fatal("GetOrLoadMany of a failing loader = nil error")
		}
		spans, _ = st.ended(n)
		i := slices.IndexFunc(spans, func(sp sdktrace.ReadOnlySpan) bool { return sp.Name() == "tiercache.load" })
		if i < 0 {
			t.Fatalf("no tiercache.load span among %d", len(spans))
		}
		sp := spans[i]
		if sp.Status().Code != codes.Error || attrMap(sp.Attributes())["tiercache.keys"] != "3" {
			t.Errorf("failed load span: status %v, attributes %v; want Error and tiercache.keys=3", sp.Status(), sp.Attributes())
		}
		if strings.Contains(sp.Status().Description, secret) || len(sp.Events()) != 0 {
			t.Errorf("failed load span carries the error's text: %q, %v", sp.Status().Description, sp.Events())
		}
	})
}

// TestLeaseWaitSpan: a node that waits on another's lease records the wait.
func TestLeaseWaitSpan(t *testing.T) {
	s := redistest.Mini(t)
	st := newSetup(t, s)
	other, err := tiered.New[string](tiered.Options{Redis: s.Client(t), Namespace: "otel"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		_, _ = other.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
			close(started)
			<-release
			return "from-other", nil
		})
	}()
	<-started
	got := make(chan string, 1)
	go func() {
		v, _ := st.cache.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "mine", nil })
		got <- v
	}()
	deadline := time.Now().Add(5 * time.Second)
	for st.cache.Stats().LeaseWaits == 0 { // poll with a deadline: nothing signals a wait from outside
		if time.Now().After(deadline) {
			t.Fatal("the cache never waited on the other node's lease")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-done
	if v := <-got; v != "from-other" {
		t.Errorf("waiter got %q, want from-other", v)
	}
	spans, _ := st.ended(0)
	if !slices.ContainsFunc(spans, func(sp sdktrace.ReadOnlySpan) bool { return sp.Name() == "tiercache.lease_wait" }) {
		t.Errorf("no tiercache.lease_wait span among %d", len(spans))
	}
	if h := histogramCount(t, st.reader, "tiercache.lease_wait.duration"); h != 1 {
		t.Errorf("tiercache.lease_wait.duration count = %d, want 1", h)
	}
}

func TestCacheAndBusMetrics(t *testing.T) {
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
	ctx := context.Background()
	if _, err := st.cache.GetOrLoadMany(ctx, []string{"a", "b"}, func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{"a": "A"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitL1(t, st.cache, "a")
	rm := collect(t, st.reader)
	for _, tt := range []struct {
		name  string
		attrs map[string]string
		want  float64
	}{
		{"tiercache.requests", map[string]string{"cache": "otel", "tier": "loader", "result": "hit"}, 1},
		{"tiercache.requests", map[string]string{"cache": "otel", "tier": "loader", "result": "miss"}, 1},
		{"tiercache.requests", map[string]string{"cache": "otel", "tier": "l2", "result": "miss"}, 2},
		{"tiercache.loads", map[string]string{"cache": "otel"}, 1},
		{"tiercache.state", map[string]string{"cache": "otel", "state": "connected"}, 1},
		{"tiercache.l1.max_cost", map[string]string{"cache": "otel"}, 64 << 20},
		{"tiercache.invalidation.usable", map[string]string{}, 1},
		{"tiercache.invalidation.registrations", map[string]string{}, 1},
	} {
		if got, ok := value(rm, tt.name, tt.attrs); !ok || got != tt.want {
			t.Errorf("%s%v = %v (found %v), want %v", tt.name, tt.attrs, got, ok, tt.want)
		}
	}
	if h := histogramCount(t, st.reader, "tiercache.load.duration"); h != 1 {
		t.Errorf("tiercache.load.duration count = %d, want 1", h)
	}
}

func traceIsRecording(ctx context.Context) bool {
	return trace.SpanFromContext(ctx).IsRecording()
}

func waitL1(t *testing.T, c *tiered.Cache[string], key string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for { // poll with a deadline: ristretto admits a fill on its own goroutine
		before := c.Stats().L1.Hits
		_, _ = c.Get(context.Background(), key)
		if c.Stats().L1.Hits > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("L1 never served %q", key)
		}
		time.Sleep(time.Millisecond)
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// value finds the data point of the instrument name whose attributes are
// exactly attrs.
func value(rm metricdata.ResourceMetrics, name string, attrs map[string]string) (float64, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var pts []metricdata.DataPoint[float64]
			switch d := m.Data.(type) {
			case metricdata.Sum[float64]:
				pts = d.DataPoints
			case metricdata.Gauge[float64]:
				pts = d.DataPoints
			}
			for _, p := range pts {
				if equalAttrs(attrMap(p.Attributes.ToSlice()), attrs) {
					return p.Value, true
				}
			}
		}
	}
	return 0, false
}

func equalAttrs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func histogramCount(t *testing.T, r *sdkmetric.ManualReader, name string) uint64 {
	t.Helper()
	var n uint64
	for _, sm := range collect(t, r).ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
				for _, p := range h.DataPoints {
					n += p.Count
				}
			}
		}
	}
	return n
}
