package tiered_test

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tiered"
)

// A loader chooses how long its answer is cached: here drafts, which
// change often, for 30 seconds instead of Options.TTL.
func ExampleChooseTTL() {
	rdb, stop := newRedis()
	defer stop()
	c, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "products"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	load := func(ctx context.Context, id string) (Product, error) {
		p := Product{ID: id, Name: "draft widget"} // from the database
		if p.Price == 0 {
			tiered.ChooseTTL(ctx, id, 30*time.Second)
		}
		return p, nil
	}
	if _, err := c.GetOrLoad(ctx, "42", load); err != nil {
		log.Fatal(err)
	}
	fmt.Println(rdb.PTTL(ctx, "products:42").Val())

	// A write can choose its TTL too.
	if err := c.Set(ctx, "43", Product{ID: "43", Price: 5}, tiered.WithTTL(time.Hour)); err != nil {
		log.Fatal(err)
	}
	fmt.Println(rdb.PTTL(ctx, "products:43").Val())
	// Output:
	// 30s
	// 1h0m0s
}

// With RefreshAhead, a value read close to its expiry is reloaded in the
// background, once across the cluster, while every reader keeps getting
// the current value.
func ExampleOptions_refreshAhead() {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()

	c, err := tiered.New[string](tiered.Options{
		Redis:        rdb,
		Namespace:    "quotes",
		TTL:          time.Second,
		RefreshAhead: 800 * time.Millisecond, // refresh in the last 0.8 to 0.4 s
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	var loads atomic.Int32
	load := func(ctx context.Context, pair string) (string, error) {
		return fmt.Sprintf("%s quote v%d", pair, loads.Add(1)), nil
	}
	v, _ := c.GetOrLoad(ctx, "EURUSD", load)
	fmt.Println(v)

	mr.FastForward(600 * time.Millisecond) // miniredis ages keys only when told; Redis needs no such step
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if v, _ = c.GetOrLoad(ctx, "EURUSD", load); v != "EURUSD quote v1" {
			break // no read waited: the refresh ran in the background
		}
	}
	fmt.Println(v, c.Stats().Refreshes > 0)
	// Output:
	// EURUSD quote v1
	// EURUSD quote v2 true
}
