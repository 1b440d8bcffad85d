package metrics_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// Register the collectors on a registry of your own, one per cache and
// one per bus, and serve it with promhttp.HandlerFor(reg,
// promhttp.HandlerOpts{}). The example runs on an in-memory Redis; a
// service passes its own client.
func ExampleNewCacheCollector() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	products, err := tiered.New[string](tiered.Options{Redis: rdb, Namespace: "products"})
	if err != nil {
		log.Fatal(err)
	}
	defer products.Close()
	if err := products.WaitReady(context.Background()); err != nil { // L1 serves from now on
		log.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewCacheCollector(products, metrics.Options{}),     // one per cache
		metrics.NewBusCollector(products.Bus(), metrics.Options{}), // one per bus, shared by its caches
	)

	load := func(context.Context, string) (string, error) { return "Widget", nil }
	if _, err := products.GetOrLoad(context.Background(), "42", load); err != nil {
		log.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tiercache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if v := m.GetCounter().GetValue(); v > 0 {
				fmt.Println(mf.GetName(), strings.Join(labels, " "), v)
			}
		}
	}
	// Output:
	// tiercache_requests_total cache=products result=hit tier=loader 1
	// tiercache_requests_total cache=products result=miss tier=l1 1
	// tiercache_requests_total cache=products result=miss tier=l2 1
}
