// Package tierotel connects tiercache to OpenTelemetry: spans and duration
// histograms for the work a cache does beyond L1, and the counters of a
// cache and of an invalidation bus as OpenTelemetry metrics, equivalent to
// the Prometheus collectors of package metrics.
//
// It is a module of its own, so that the tiercache module does not depend
// on OpenTelemetry. Use it as:
//
//	tracer, err := tierotel.NewTracer(tierotel.Options{TracerProvider: tp, MeterProvider: mp})
//	...
//	c, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products", Tracer: tracer})
//	...
//	reg, err := tierotel.RegisterCache(c, tierotel.Options{MeterProvider: mp}) // one per cache
//	busReg, err := tierotel.RegisterBus(c.Bus(), tierotel.Options{MeterProvider: mp}) // one per bus
//
// # Spans
//
// The tracer makes a span for each loader call (tiercache.load), each wait
// for values another node holds the lease on (tiercache.lease_wait), and
// each Redis round trip (tiercache.l2.get, .get_many, .lease, .fill,
// .release, .write, .refresh). Each carries the attributes tiercache.cache
// (the cache's Namespace) and tiercache.keys (how many keys it was for),
// never the keys themselves: keys can be personal data. An L1 hit makes no
// span and costs nothing more. A loader's context carries its load's span,
// so the spans the loader makes (a database query) nest under it. A span
// of work that failed has status Error and an attribute error.type
// ("unavailable" while the breaker is open, "timeout", "canceled", or the
// error's Go type); not the error's text, which may name keys.
//
// # Metrics
//
// The tracer records the duration of each span in the histograms
// tiercache.load.duration, tiercache.l2.round_trip.duration (attribute op)
// and tiercache.lease_wait.duration, in seconds, each with the attribute
// cache. [RegisterCache] and [RegisterBus] export everything else the
// Prometheus collectors do, read from Stats at each collection, with the
// same names once an OpenTelemetry Prometheus exporter has translated
// them (tiercache.l1.cost in By becomes tiercache_l1_cost_bytes;
// tiercache.requests, a counter, becomes tiercache_requests_total) and the
// same attributes (cache, tier, result, state, reason). The one
// Prometheus histogram not exported is the bus's delivery lag: it is
// measured in the receive loop, which has no hook, and OpenTelemetry has
// no asynchronous histogram to report it from a snapshot; read it with
// [invalidation.Bus.DeliveryLag] or the Prometheus collector.
package tierotel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/tiered"
)

// scope is the instrumentation scope of every tracer and meter made here.
const scope = "github.com/tiercache/tiercache/tierotel"

// Options configures [NewTracer], [RegisterCache] and [RegisterBus]. The
// zero value uses OpenTelemetry's global providers, as OpenTelemetry's
// own instrumentation libraries do.
type Options struct {
	// TracerProvider makes the spans. Default: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the instruments. Default: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Prefix starts every metric name (not span names). Default:
	// "tiercache".
	Prefix string
}

func (o Options) withDefaults() Options {
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.Prefix == "" {
		o.Prefix = "tiercache"
	}
	return o
}

// bounds are the bucket bounds of the duration histograms, in seconds:
// those of the library's own histograms (50µs to 30s, roughly doubling),
// so that loopback Redis calls and slow loaders both resolve.
var bounds = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// NewTracer returns a [tiered.Tracer] to set as tiered.Options.Tracer: it
// makes the spans and records the durations described in the package
// comment. One tracer may serve every cache of a process. It fails only if
// the meter refuses an instrument.
func NewTracer(o Options) (tiered.Tracer, error) {
	o = o.withDefaults()
	tr := o.TracerProvider.Tracer(scope)
	meter := o.MeterProvider.Meter(scope)
	hist := func(name, desc string) (metric.Float64Histogram, error) {
		return meter.Float64Histogram(o.Prefix+"."+name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(bounds...))
	}
	load, err := hist("load.duration", "Loader call latency.")
	if err != nil {
		return nil, err
	}
	l2, err := hist("l2.round_trip.duration", "Redis round-trip latency per kind of call (op).")
	if err != nil {
		return nil, err
	}
	wait, err := hist("lease_wait.duration", "Time spent waiting for values another node held the lease on.")
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, w tiered.Work) (context.Context, func(error)) {
		name, kind, h := "tiercache."+w.Op, trace.SpanKindInternal, load
		attrs := []attribute.KeyValue{attribute.String("cache", w.Namespace)}
		switch w.Op {
		case tiered.OpL2:
			name, kind, h = "tiercache.l2."+w.L2Op, trace.SpanKindClient, l2
			attrs = append(attrs, attribute.String("op", w.L2Op))
		case tiered.OpLeaseWait:
			h = wait
		}
		ctx, span := tr.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(
			attribute.String("tiercache.cache", w.Namespace), attribute.Int("tiercache.keys", w.Keys)))
		start := time.Now()
		return ctx, func(err error) {
			if err != nil {
				// Not err's text: it may name keys (ours do).
				span.SetAttributes(attribute.String("error.type", errorType(err)))
				span.SetStatus(codes.Error, errorType(err))
			}
			span.End()
			h.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs...))
		}
	}, nil
}

// errorType classifies err for a span without its text.
func errorType(err error) string {
	switch {
	case errors.Is(err, tiered.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return fmt.Sprintf("%T", err)
}
