// Command demo shows tiercache at work: two replicas of a service share one
// Redis, load a product once between them, serve it from memory, and see a
// write on one replica reach the other: an ordinary write within the
// staleness bound (its delay is measured and printed), a confirmed write
// before it returns.
//
// Without -redis it starts an embedded Redis: a redis-server child on a free
// loopback port, or, when redis-server is not installed, an in-process
// miniredis (with a warning).
//
//	go -C examples run ./demo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/examples/devredis"
	"github.com/tiercache/tiercache/tiered"
)

type Product struct {
	ID    string
	Name  string
	Price int
}

func main() {
	addr := flag.String("redis", "", "Redis address (host:port); empty runs an embedded Redis")
	flag.Parse()
	if err := run(*addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, out io.Writer) error {
	ctx := context.Background()
	if addr == "" {
		srv, err := devredis.Start(ctx, devredis.Options{AllowMiniredis: true})
		if err != nil {
			return err
		}
		defer srv.Close()
		addr = srv.Addr
		fmt.Fprintf(out, "embedded Redis (%s) on %s\n", srv.Kind, addr)
		if srv.Kind == devredis.Miniredis {
			fmt.Fprintln(os.Stderr, "warning: redis-server not found; using in-process miniredis, which is not Redis (install redis-server for the real thing)")
		}
	}

	// The "database": a map, with a counter of queries.
	db := map[string]Product{"42": {ID: "42", Name: "Widget", Price: 995}}
	var queries atomic.Int64
	load := func(ctx context.Context, id string) (Product, error) {
		queries.Add(1)
		time.Sleep(20 * time.Millisecond) // a slow query
		p, ok := db[id]
		if !ok {
			return Product{}, tiered.ErrNotFound
		}
		return p, nil
	}

	// Two replicas, each with its own Redis client, as two processes would.
	replica := func(name string) (*tiered.Cache[Product], func(), error) {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		c, err := tiered.New[Product](tiered.Options{Redis: rdb, Namespace: "demo-products", TTL: time.Minute})
		if err != nil {
			rdb.Close()
			return nil, nil, fmt.Errorf("replica %s: %w", name, err)
		}
		return c, func() { c.Close(); rdb.Close() }, nil
	}
	a, closeA, err := replica("a")
	if err != nil {
		return err
	}
	defer closeA()
	b, closeB, err := replica("b")
	if err != nil {
		return err
	}
	defer closeB()
	_ = a.Delete(ctx, "42", "7") // start clean when pointed at a shared Redis

	step := func(what string, f func() (Product, error)) Product {
		start := time.Now()
		p, err := f()
		el := time.Since(start).Round(10 * time.Microsecond)
		switch {
		case errors.Is(err, tiered.ErrNotFound):
			fmt.Fprintf(out, "%-52s -> not found          (%v, db queries so far: %d)\n", what, el, queries.Load())
		case err != nil:
			fmt.Fprintf(out, "%-52s -> error %v\n", what, err)
		default:
			fmt.Fprintf(out, "%-52s -> %-10s %6d  (%v, db queries so far: %d)\n", what, p.Name, p.Price, el, queries.Load())
		}
		return p
	}
	get := func(c *tiered.Cache[Product], id string) func() (Product, error) {
		return func() (Product, error) { return c.GetOrLoad(ctx, id, load) }
	}

	step("a: GetOrLoad 42 (cold: loads from the db)", get(a, "42"))
	step("b: GetOrLoad 42 (from Redis, no db query)", get(b, "42"))
	waitL1(a, "42")
	waitL1(b, "42")
	step("a: GetOrLoad 42 (from memory)", get(a, "42"))
	step("b: GetOrLoad 42 (from memory)", get(b, "42"))

	// An ordinary write: Set returns once Redis has the value and the
	// invalidation is on its way; b drops its copy when it arrives, within
	// the staleness bound (MaxStaleness, 2s), in practice a millisecond or
	// so. A read on b in between still gets the old value.
	db["42"] = Product{ID: "42", Name: "Widget", Price: 1095}
	if err := a.Set(ctx, "42", db["42"]); err != nil {
		return err
	}
	set := time.Now()
	fmt.Fprintln(out, "a: Set 42 to 1095 after the db update (Redis write + invalidation, one round trip)")
	if p := step("b: GetOrLoad 42 at once", get(b, "42")); p.Price != 1095 {
		fmt.Fprintln(out, "   (the old price: b's invalidation was still on its way)")
	}
	for {
		if p, err := b.GetOrLoad(ctx, "42", load); err == nil && p.Price == 1095 {
			break
		}
		time.Sleep(100 * time.Microsecond) // poll: the invalidation has no signal outside the cache
	}
	fmt.Fprintf(out, "b: sees 1095 %v after a's Set returned\n", time.Since(set).Round(10*time.Microsecond))

	// A confirmed write returns only once every replica has dropped the
	// old value: the next read anywhere gets the new one.
	waitL1(b, "42")
	db["42"] = Product{ID: "42", Name: "Widget", Price: 1195}
	start := time.Now()
	if err := a.Set(ctx, "42", db["42"], tiered.Confirm()); err != nil {
		return err
	}
	fmt.Fprintf(out, "a: Set 42 to 1195, confirmed (returned in %v, once every replica had dropped 1095)\n",
		time.Since(start).Round(10*time.Microsecond))
	step("b: GetOrLoad 42 at once", get(b, "42"))

	step("a: GetOrLoad 7 (no such row: cached as absent)", get(a, "7"))
	step("b: GetOrLoad 7 (absent, no db query)", get(b, "7"))

	st := a.Stats()
	fmt.Fprintf(out, "\nreplica a: L1 hits %d, L1 misses %d, loads %d, Redis round trips %d\n",
		st.L1.Hits, st.L1.Misses, st.Loads, st.L2.RoundTrips)
	fmt.Fprintf(out, "replica b: invalidations received %d, bus messages received %d\n",
		b.Stats().Invalidations, b.Stats().Bus.Received)
	return nil
}

// waitL1 reads until the value is served from memory: the in-process cache
// admits new entries asynchronously.
func waitL1(c *tiered.Cache[Product], id string) {
	for range 50 {
		before := c.Stats().L2.RoundTrips
		if _, err := c.Get(context.Background(), id); err == nil && c.Stats().L2.RoundTrips == before {
			return
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "note: L1 did not admit the entry yet")
}
