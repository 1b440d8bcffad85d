package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tiered"
)

type Product struct {
	ID    string
	Name  string
	Price int
}

// The examples run on an in-memory Redis; a service passes its own client.
func newRedis() (*redis.Client, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { rdb.Close(); mr.Close() }
}

func ExampleNew() {
	rdb, stop := newRedis()
	defer stop()

	c, err := tiered.New[Product](tiered.Options{
		Redis:     rdb,
		Namespace: "products",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Get(context.Background(), "42")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output: true
}

func ExampleCache_GetOrLoad() {
	rdb, stop := newRedis()
	defer stop()
	c, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	loadProduct := func(ctx context.Context, id string) (Product, error) {
		// Query the database here. Return tiered.ErrNotFound for a missing
		// row: that answer is cached too, for Options.NegativeTTL.
		return Product{ID: id, Name: "Widget", Price: 995}, nil
	}
	p, err := c.GetOrLoad(context.Background(), "42", loadProduct)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Name, p.Price)
	// Output: Widget 995
}

func ExampleCache_Set() {
	rdb, stop := newRedis()
	defer stop()
	c, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	// Commit the change to the database first, then tell the cache: Set
	// writes Redis and invalidates every node's L1 in one round trip.
	if err := c.Set(ctx, "42", Product{ID: "42", Name: "Widget v2", Price: 1095}); err != nil {
		log.Fatal(err)
	}
	p, err := c.Get(ctx, "42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Name)
	// Output: Widget v2
}
