package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// demoConfig sets up runDemo.
type demoConfig struct {
	Database string // as -database; empty: a temporary SQLite file, removed at the end
	Redis    string // as -redis; empty: an embedded Redis, stopped at the end
	Replicas int    // at least 2
	Reads    int    // reads per replica after the update
	Out      io.Writer
	Logger   *slog.Logger // for the replicas; nil discards
}

// hotProducts is how many products the reads after the update spread over.
const hotProducts = 20

// runDemo runs the replica demo (see the package doc) and writes what
// happens to c.Out. It stops everything it started before it returns.
func runDemo(ctx context.Context, c demoConfig) error {
	if c.Replicas < 2 {
		return errors.New("demo: need at least 2 replicas")
	}
	d := &demo{out: c.Out}
	defer d.stop()
	if err := d.start(ctx, c); err != nil {
		return err
	}

	// 1. The same product through every replica.
	d.printf("\n1. GET /products/1 through each replica\n")
	var before Product
	for i := range d.replicas {
		p, how, took, err := d.get(ctx, i, 1)
		if err != nil {
			return err
		}
		before = p
		d.printf("   replica %d  %-14s %8s  from %-24s %v\n", i+1, p.Name, dollars(p.Price), how, round(took))
	}

	// 2. An update through replica 1, and how soon the others see it.
	newPrice := before.Price + 500
	body := fmt.Sprintf(`{"price":%d}`, newPrice)
	start := time.Now()
	updated, err := d.put(ctx, 0, 1, body)
	if err != nil {
		return err
	}
	d.printf("\n2. PUT /products/1 %s through replica 1: %s in %v\n", body, dollars(updated.Price), round(time.Since(start)))
	d.printf("   (committed to the database, then deleted from Redis and from every replica's L1)\n")
	returned := time.Now()
	lines := make([]string, len(d.replicas))
	var wg sync.WaitGroup
	errs := make([]error, len(d.replicas))
	for i := 1; i < len(d.replicas); i++ {
		wg.Go(func() { lines[i], errs[i] = d.waitForPrice(ctx, i, 1, newPrice, returned) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, l := range lines[1:] {
		d.printf("%s", l)
	}

	// 3. Ordinary traffic, then what each replica counted.
	d.printf("\n3. %d more reads per replica, all at once, over products 1-%d\n", c.Reads, hotProducts)
	for i := range d.replicas {
		wg.Go(func() {
			for n := range c.Reads {
				if _, _, _, err := d.get(ctx, i, int64(n%hotProducts+1)); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var total uint64
	for i, r := range d.replicas {
		st, rs := r.cache.Stats(), r.repo.Stats()
		total += rs.Queries
		d.printf("   replica %d  L1 hit ratio %5.1f%% (%d of %d lookups)  database queries %d: loads %d, writes %d\n",
			i+1, 100*r.l1HitRatio(), st.L1.Hits, st.L1.Hits+st.L1.Misses+st.L1Bypassed,
			rs.Queries, rs.LoadQueries, rs.Queries-rs.LoadQueries)
	}
	d.printf("   %d database queries in all, for %d reads and 1 update\n", total, d.reads.Load())

	d.stop()
	d.printf("\nstopped %d replicas, %s\n", len(d.replicas), strings.Join(d.started, " and "))
	return nil
}

// demo holds what runDemo started, in the order it stops it.
type demo struct {
	out      io.Writer
	replicas []*replica
	urls     []string
	client   *http.Client
	reads    atomic.Int64 // GETs sent
	started  []string     // what stop stops besides the replicas, for the last line
	cleanups []func()     // run in reverse by stop
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) stop() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

func (d *demo) start(ctx context.Context, c demoConfig) error {
	redisAddr, kind, stopRedis, err := redisFor(ctx, c.Redis, d.out)
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, stopRedis)
	redisDesc := redisAddr + ", given by -redis"
	if kind != "" {
		redisDesc = fmt.Sprintf("%s, embedded %s", redisAddr, kind)
		d.started = append(d.started, "the embedded Redis")
	}

	dbName, where := c.Database, "given by -database"
	if dbName == "" {
		dir, err := os.MkdirTemp("", "catalog-demo-")
		if err != nil {
			return err
		}
		d.cleanups = append(d.cleanups, func() { os.RemoveAll(dir) })
		dbName, where = filepath.Join(dir, "catalog.db"), "a temporary file"
		d.started = append(d.started, "the temporary database")
	}
	db, dialect, err := openDatabase(ctx, dbName)
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() { db.Close() })
	d.printf("database   %s, %s\n", dialect.Name, where)
	d.printf("redis      %s\n", redisDesc)

	transport := &http.Transport{}
	d.client = &http.Client{Transport: transport, Timeout: 10 * time.Second}
	d.cleanups = append(d.cleanups, transport.CloseIdleConnections)

	// A namespace of its own, so that a shared Redis (-redis) holds no
	// copies from another database under the same keys.
	ns := fmt.Sprintf("catalog-demo-%d", time.Now().UnixNano())
	for i := range c.Replicas {
		r, err := newReplica(replicaConfig{DB: db, RedisAddr: redisAddr, Namespace: ns, Logger: c.Logger})
		if err != nil {
			return err
		}
		d.cleanups = append(d.cleanups, r.Close)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: r.handler, ReadHeaderTimeout: 5 * time.Second}
		served := make(chan struct{})
		go func() { _ = srv.Serve(ln); close(served) }()
		d.cleanups = append(d.cleanups, func() {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
			<-served
		})
		d.replicas = append(d.replicas, r)
		d.urls = append(d.urls, "http://"+ln.Addr().String())
		d.printf("replica %d  %s\n", i+1, d.urls[i])
	}
	// Wait until every replica's bus has proven its subscription, so that
	// L1 serves from the first read.
	readyCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for i, r := range d.replicas {
		if err := r.cache.WaitReady(readyCtx); err != nil {
			return fmt.Errorf("replica %d: cache not ready: %w", i+1, err)
		}
	}
	return nil
}

// get reads product id through replica i and says where the replica found
// it, from the replica's counters.
func (d *demo) get(ctx context.Context, i int, id int64) (Product, string, time.Duration, error) {
	r := d.replicas[i]
	before := r.cache.Stats()
	d.reads.Add(1)
	start := time.Now()
	var p Product
	err := d.do(ctx, http.MethodGet, fmt.Sprintf("%s/products/%d", d.urls[i], id), "", &p)
	took := time.Since(start)
	after := r.cache.Stats()
	how := "Redis (L2)"
	switch {
	case after.Loads > before.Loads:
		how = "the database"
	case after.LeaseWaitHits > before.LeaseWaitHits:
		how = "Redis, loaded by a peer"
	case after.L1.Hits > before.L1.Hits:
		how = "memory (L1)"
	}
	return p, how, took, err
}

// waitForPrice reads product id through replica i until it serves price,
// and describes how long that took after since. The first read normally
// does; reads repeat, a millisecond apart, only while the invalidation is
// still on its way, for up to 5 s (the staleness bound is 2 s).
func (d *demo) waitForPrice(ctx context.Context, i int, id, price int64, since time.Time) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for n := 1; ; n++ {
		p, how, _, err := d.get(ctx, i, id)
		if err != nil {
			return "", err
		}
		if p.Price == price {
			which := "its first read"
			if n > 1 {
				which = fmt.Sprintf("read %d", n)
			}
			return fmt.Sprintf("   replica %d serves the new price %s %v after the update returned (%s, from %s)\n",
				i+1, dollars(price), round(time.Since(since)), which, how), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("replica %d still serves %s 5s after the update", i+1, dollars(p.Price))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (d *demo) put(ctx context.Context, i int, id int64, body string) (Product, error) {
	var p Product
	err := d.do(ctx, http.MethodPut, fmt.Sprintf("%s/products/%d", d.urls[i], id), body, &p)
	return p, err
}

// do sends one request and decodes a 200 answer into v.
func (d *demo) do(ctx context.Context, method, url, body string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, bytes.TrimSpace(msg))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func dollars(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// round keeps durations readable: microseconds under a millisecond.
func round(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}
