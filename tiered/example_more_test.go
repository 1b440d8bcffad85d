package tiered_test

import (
	"context"
	"fmt"
	"log"
	"maps"
	"slices"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// GetOrLoadMany calls its loader once, with only the keys neither tier
// has; a key the loader leaves out has no value, and is cached as such.
func ExampleCache_GetOrLoadMany() {
	rdb, stop := newRedis()
	defer stop()
	c, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if err := c.Set(ctx, "1", Product{ID: "1", Name: "Widget", Price: 995}); err != nil {
		log.Fatal(err)
	}
	loadProducts := func(ctx context.Context, ids []string) (map[string]Product, error) {
		// One query for every id still missing: SELECT ... WHERE id IN (...).
		fmt.Println("loading", ids)
		found := map[string]Product{}
		for _, id := range ids {
			if id != "404" {
				found[id] = Product{ID: id, Name: "Gadget " + id, Price: 100}
			}
		}
		return found, nil
	}
	got, err := c.GetOrLoadMany(ctx, []string{"1", "2", "3", "404"}, loadProducts)
	if err != nil {
		log.Fatal(err)
	}
	for _, id := range slices.Sorted(maps.Keys(got)) {
		fmt.Println(id, got[id].Name)
	}
	// Output:
	// loading [2 3 404]
	// 1 Widget
	// 2 Gadget 2
	// 3 Gadget 3
}

// One Bus per process serves every cache: one subscription, one heartbeat,
// whatever the number of caches and namespaces. A write through one cache
// drops the key from every cache of its namespace on the bus at once.
func ExampleOptions_sharedBus() {
	rdb, stop := newRedis()
	defer stop()
	ctx := context.Background()
	bus, err := invalidation.New(ctx, invalidation.Options{Redis: rdb})
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close() // after the caches: a cache never closes a shared bus

	products, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products", Bus: bus})
	if err != nil {
		log.Fatal(err)
	}
	defer products.Close()
	// Two caches of one namespace, as two handlers of a service may have.
	prices, err := tiered.New[int](tiered.Options{Redis: rdb, Namespace: "prices", Bus: bus})
	if err != nil {
		log.Fatal(err)
	}
	defer prices.Close()
	checkout, err := tiered.New[int](tiered.Options{Redis: rdb, Namespace: "prices", Bus: bus})
	if err != nil {
		log.Fatal(err)
	}
	defer checkout.Close()
	if err := prices.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}

	load := func(price int) tiered.Loader[int] {
		return func(context.Context, string) (int, error) { return price, nil }
	}
	p, _ := prices.GetOrLoad(ctx, "42", load(995))
	q, _ := checkout.GetOrLoad(ctx, "42", load(995))
	fmt.Println(p, q)
	// The price changed in the database; one cache is told.
	if err := prices.Delete(ctx, "42"); err != nil {
		log.Fatal(err)
	}
	q, _ = checkout.GetOrLoad(ctx, "42", load(1095))
	fmt.Println(q)
	fmt.Println(bus.Stats().Registrations, "caches on one bus")
	// Output:
	// 995 995
	// 1095
	// 3 caches on one bus
}

// A Cluster client works as any other: keys go to their slots, and
// invalidations through the node that serves the channel. Here the
// "cluster" is one in-memory node that owns every slot; a service passes
// redis.NewClusterClient with its seed nodes.
func ExampleOptions_cluster() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{mr.Addr()}})
	defer rdb.Close()

	c, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.SetMany(ctx, map[string]Product{
		"1": {ID: "1", Name: "Widget"},
		"2": {ID: "2", Name: "Gadget"},
	}); err != nil {
		log.Fatal(err)
	}
	got, err := c.GetMany(ctx, []string{"1", "2", "3"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(got), got["1"].Name, got["2"].Name)
	// Output: 2 Widget Gadget
}
