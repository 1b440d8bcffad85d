package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gcache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/tiered"
)

// The outage scenario: OutageNodes nodes of one library, each reaching
// Redis through its own fault proxy, read OutageKeys Zipf keys at a paced
// rate through the library's cache-aside call with a loader that costs
// OutageLoadCost. After a warmup every proxy blackholes Redis (accepts,
// never answers) for the outage, then passes again.
const (
	OutageNodes    = 4
	OutageKeys     = 1000
	OutageRate     = 400 // reads per second per node
	OutageLoadCost = time.Millisecond
)

// loadingNode is a node read through a loader, the way an application
// reads its database through the cache.
type loadingNode interface {
	getOrLoad(ctx context.Context, key string, load func(ctx context.Context, key string) (string, error)) (string, error)
	close()
}

type outageLib struct {
	name    string
	newNode func(addr string) (loadingNode, error)
	note    string
}

func outageLibraries() []outageLib {
	return []outageLib{
		{"tiercache", newTiercacheLoading, "GetOrLoad, default options"},
		{"go-redis/cache", newGoRedisCacheLoading, "Once with a TinyLFU local cache, local TTL 1m"},
		{"rueidis", newRueidisLoading, "DoCache, then the loader and SET on a miss or an error"},
	}
}

// outageClient is the go-redis client tiercache and go-redis/cache get: the
// deadline of each call's context is honoured on the socket, as both
// libraries' timeouts need.
func outageClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
}

type tiercacheLoading struct {
	rdb *redis.Client
	c   *tiered.Cache[string]
}

func newTiercacheLoading(addr string) (loadingNode, error) {
	rdb := outageClient(addr)
	c, err := tiered.New[string](tiered.Options{Redis: rdb, Namespace: "outage"})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &tiercacheLoading{rdb: rdb, c: c}, nil
}

func (n *tiercacheLoading) getOrLoad(ctx context.Context, key string, load func(context.Context, string) (string, error)) (string, error) {
	return n.c.GetOrLoad(ctx, key, load)
}

func (n *tiercacheLoading) close() { n.c.Close(); n.rdb.Close() }

type goRedisCacheLoading struct {
	rdb *redis.Client
	c   *gcache.Cache
}

func newGoRedisCacheLoading(addr string) (loadingNode, error) {
	rdb := outageClient(addr)
	return &goRedisCacheLoading{rdb: rdb, c: gcache.New(&gcache.Options{Redis: rdb, LocalCache: gcache.NewTinyLFU(100_000, peerLocalTTL)})}, nil
}

func (n *goRedisCacheLoading) getOrLoad(ctx context.Context, key string, load func(context.Context, string) (string, error)) (string, error) {
	var v string
	err := n.c.Once(&gcache.Item{Ctx: ctx, Key: "grc-outage:" + key, Value: &v, TTL: time.Hour,
		Do: func(it *gcache.Item) (any, error) { return load(it.Ctx, key) }})
	return v, err
}

func (n *goRedisCacheLoading) close() { n.rdb.Close() }

type rueidisLoading struct{ c rueidis.Client }

func newRueidisLoading(addr string) (loadingNode, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		return nil, fmt.Errorf("rueidis.NewClient: %w", err)
	}
	return &rueidisLoading{c: c}, nil
}

// getOrLoad is cache-aside by hand, as rueidis's docs show it: DoCache the
// GET; on a miss load and SET; on an error serve the loader's value.
func (n *rueidisLoading) getOrLoad(ctx context.Context, key string, load func(context.Context, string) (string, error)) (string, error) {
	k := "rue-outage:" + key
	v, err := n.c.DoCache(ctx, n.c.B().Get().Key(k).Cache(), peerLocalTTL).ToString()
	if err == nil {
		return v, nil
	}
	v, lerr := load(ctx, key)
	if lerr != nil {
		return "", lerr
	}
	if rueidis.IsRedisNil(err) {
		_ = n.c.Do(ctx, n.c.B().Set().Key(k).Value(v).Build()).Error()
	}
	return v, nil
}

func (n *rueidisLoading) close() { n.c.Close() }

// outageRead is one timed read.
type outageRead struct{ at, lat time.Duration } // since the fault; latency

// outageResult is one library's run.
type outageResult struct {
	before, during, after []time.Duration // sorted latencies
	fastFailure           time.Duration   // fault to the first 100ms window with p99 under the loader's cost + 2ms; -1: never
	localAgain            time.Duration   // recovery to the first 100ms window with median under 100us; -1: never
	loadsPerSec           float64         // loader calls per second during the outage
	errors                int64
}

// runOutage runs the scenario for lib against the Redis at addr.
func runOutage(ctx context.Context, lib outageLib, addr string, warmFor, outageFor, afterFor time.Duration) (outageResult, error) {
	var res outageResult
	nodes := make([]loadingNode, 0, OutageNodes)
	proxies := make([]*faultproxy.Proxy, 0, OutageNodes)
	defer func() {
		for _, n := range nodes {
			n.close()
		}
		for _, p := range proxies {
			_ = p.Close()
		}
	}()
	for range OutageNodes {
		p, err := faultproxy.Start(addr)
		if err != nil {
			return res, err
		}
		proxies = append(proxies, p)
		n, err := lib.newNode(p.Addr())
		if err != nil {
			return res, fmt.Errorf("%s: %w", lib.name, err)
		}
		nodes = append(nodes, n)
	}
	var loads atomic.Int64
	load := simulatedQuery(OutageLoadCost, func(string) { loads.Add(1) })
	start := time.Now()
	faultAt := start.Add(warmFor)
	healAt := faultAt.Add(outageFor)
	end := healAt.Add(afterFor)
	var mu sync.Mutex
	var reads []outageRead
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 11))
			z := rand.NewZipf(r, 1.1, 1, OutageKeys-1)
			tick := time.NewTicker(time.Second / OutageRate)
			defer tick.Stop()
			var mine []outageRead
			for now := range tick.C {
				if now.After(end) || ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				// A read may wait out the whole outage, not longer.
				rctx, cancel := context.WithTimeout(ctx, outageFor)
				_, err := n.getOrLoad(rctx, fmt.Sprint(z.Uint64()), load)
				cancel()
				if err != nil {
					atomic.AddInt64(&res.errors, 1)
				}
				mine = append(mine, outageRead{at: t0.Sub(faultAt), lat: time.Since(t0)})
			}
			mu.Lock()
			reads = append(reads, mine...)
			mu.Unlock()
		})
	}
	sleepCtx(ctx, time.Until(faultAt))
	for _, p := range proxies {
		p.Blackhole(true)
	}
	atFault := loads.Load()
	sleepCtx(ctx, time.Until(healAt))
	res.loadsPerSec = float64(loads.Load()-atFault) / outageFor.Seconds()
	for _, p := range proxies {
		p.Blackhole(false)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}

	heal := healAt.Sub(faultAt)
	for _, r := range reads {
		switch {
		case r.at < 0:
			res.before = append(res.before, r.lat)
		case r.at < heal:
			res.during = append(res.during, r.lat)
		default:
			res.after = append(res.after, r.lat)
		}
	}
	for _, s := range [][]time.Duration{res.before, res.during, res.after} {
		slices.Sort(s)
	}
	slices.SortFunc(reads, func(a, b outageRead) int { return int(a.at - b.at) })
	res.fastFailure = firstWindow(reads, 0, heal, func(w []time.Duration) bool {
		return percentile(w, 99) < OutageLoadCost+2*time.Millisecond
	})
	res.localAgain = firstWindow(reads, heal, end.Sub(faultAt), func(w []time.Duration) bool {
		return percentile(w, 50) < 100*time.Microsecond
	})
	if res.localAgain >= 0 {
		res.localAgain -= heal
	}
	return res, nil
}

// firstWindow returns the start of the first 100ms window of reads, from
// from to to, whose sorted latencies satisfy ok, or -1.
func firstWindow(reads []outageRead, from, to time.Duration, ok func([]time.Duration) bool) time.Duration {
	const width = 100 * time.Millisecond
	for at := from; at+width <= to; at += 10 * time.Millisecond {
		var w []time.Duration
		for _, r := range reads {
			if r.at >= at && r.at < at+width {
				w = append(w, r.lat)
			}
		}
		if len(w) < 10 {
			continue
		}
		slices.Sort(w)
		if ok(w) {
			return at
		}
	}
	return -1
}

// simulatedQuery is the scenarios' loader: a database query that takes
// cost (or until ctx ends) and returns "v" + key; called sees every call.
func simulatedQuery(cost time.Duration, called func(key string)) func(context.Context, string) (string, error) {
	return func(ctx context.Context, key string) (string, error) {
		called(key)
		t := time.NewTimer(cost)
		defer t.Stop()
		select {
		case <-t.C:
			return "v" + key, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// sleepCtx waits d or until ctx ends: the scenario's phases are lengths of
// time.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// outageTable runs the scenario for every library and returns its table.
func outageTable(ctx context.Context, addr string, warmFor, outageFor, afterFor time.Duration) (*table, error) {
	t := &table{header: []string{"library", "before p50/p99", "outage p50/p99/max", "after p50/p99/max",
		"fault to fast failure", "recovery to local hits", "loader calls/s in outage", "errors", "note"}}
	for _, lib := range outageLibraries() {
		r, err := runOutage(ctx, lib, addr, warmFor, outageFor, afterFor)
		if err != nil {
			return nil, err
		}
		pq := func(s []time.Duration, qs ...float64) string {
			out := ""
			for i, q := range qs {
				if i > 0 {
					out += " / "
				}
				out += fmtDur(percentile(s, q))
			}
			return out
		}
		never := func(d time.Duration) string {
			if d < 0 {
				return "never"
			}
			return fmtDur(d)
		}
		t.add(lib.name, pq(r.before, 50, 99), pq(r.during, 50, 99, 100), pq(r.after, 50, 99, 100),
			never(r.fastFailure), never(r.localAgain), fmt.Sprintf("%.0f", r.loadsPerSec), fmt.Sprint(r.errors), lib.note)
	}
	return t, nil
}

// fmtDur prints d with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fus", float64(d)/float64(time.Microsecond))
	}
}
