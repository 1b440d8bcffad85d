package tierotel_test

import (
	"context"
	"fmt"
	"log"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tierotel"
)

// Set the tracer in tiered.Options, and register the cache's and its bus's
// metrics. A service passes its own providers (with exporters) and Redis
// client; here spans go to memory and Redis is in memory too.
func ExampleNewTracer() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	mp := sdkmetric.NewMeterProvider()
	defer tp.Shutdown(context.Background())
	defer mp.Shutdown(context.Background())
	o := tierotel.Options{TracerProvider: tp, MeterProvider: mp}

	tracer, err := tierotel.NewTracer(o)
	if err != nil {
		log.Fatal(err)
	}
	c, err := tiered.New[string](tiered.Options{Redis: rdb, Namespace: "products", Tracer: tracer})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	cacheMetrics, err := tierotel.RegisterCache(c, o)
	if err != nil {
		log.Fatal(err)
	}
	defer cacheMetrics.Unregister()
	busMetrics, err := tierotel.RegisterBus(c.Bus(), o)
	if err != nil {
		log.Fatal(err)
	}
	defer busMetrics.Unregister()

	load := func(context.Context, string) (string, error) { return "Widget", nil }
	if _, err := c.GetOrLoad(context.Background(), "42", load); err != nil {
		log.Fatal(err)
	}
	for _, s := range spans.Ended() {
		fmt.Println(s.Name())
	}
	// Output:
	// tiercache.l2.lease
	// tiercache.load
	// tiercache.l2.fill
}
