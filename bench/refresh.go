package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viccon/sturdyc"

	"github.com/tiercache/tiercache/tiered"
)

// The refresh scenario: hot keys expiring under load. RefreshNodes nodes
// of one system read RefreshKeys Zipf keys, paced at RefreshRate reads per
// second per node, through the system's cache-aside call, with a loader
// that costs RefreshLoadCost and values that live RefreshTTL. A read
// "waited for a load" when it took longer than RefreshWaited: an L1 hit
// takes microseconds, an L2 hit well under a millisecond on loopback.
const (
	RefreshNodes    = 4
	RefreshKeys     = 10_000
	RefreshRate     = 400 // reads per second per node
	RefreshReaders  = 4   // goroutines per node sharing its rate
	RefreshTTL      = 2 * time.Second
	RefreshLoadCost = 5 * time.Millisecond
	RefreshWaited   = 4 * time.Millisecond
	// RefreshHot is how many of the most popular keys count as hot: with
	// these rates each is read at least twice per second on every node,
	// so several times within any refresh window; that is where refreshing
	// ahead can help (keys read less often than once per window simply
	// expire, by design).
	RefreshHot = 20
)

type refreshSystem struct {
	name    string
	newNode func(addr string) (loadingNode, error)
	note    string
}

func refreshSystems() []refreshSystem {
	tc := func(mod func(*tiered.Options)) func(string) (loadingNode, error) {
		return func(addr string) (loadingNode, error) {
			rdb := outageClient(addr)
			o := tiered.Options{Redis: rdb, Namespace: "refresh", TTL: RefreshTTL}
			if mod != nil {
				mod(&o)
			}
			c, err := tiered.New[string](o)
			if err != nil {
				rdb.Close()
				return nil, err
			}
			return &tiercacheLoading{rdb: rdb, c: c}, nil
		}
	}
	return []refreshSystem{
		{"tiercache, no expiry (L1-hit floor)", tc(func(o *tiered.Options) { o.TTL = time.Hour }),
			"TTL 1h: after warmup every hot read is an L1 hit; the p99 the others aim at"},
		{"tiercache", tc(nil), "GetOrLoad, TTL 2s, refresh off"},
		{"tiercache refresh-ahead", tc(func(o *tiered.Options) { o.RefreshAhead = time.Second }),
			"RefreshAhead 1s"},
		{"tiercache refresh-ahead + SWR", tc(func(o *tiered.Options) {
			o.RefreshAhead = time.Second
			o.StaleWhileRevalidate = time.Second
		}), "RefreshAhead 1s, StaleWhileRevalidate 1s"},
		{"sturdyc early refreshes", newSturdyc,
			"WithEarlyRefreshes(1s, 1.5s, sync 2s, retry 10ms) + WithDistributedStorageEarlyRefreshes(go-redis, 1s), TTL 2s"},
	}
}

// sturdycNode is one sturdyc client with its distributed storage on Redis.
type sturdycNode struct {
	rdb *redis.Client
	c   *sturdyc.Client[string]
}

func newSturdyc(addr string) (loadingNode, error) {
	rdb := outageClient(addr)
	st := &sturdycRedis{rdb: rdb, ttl: RefreshTTL}
	c := sturdyc.New[string](100_000, 10, RefreshTTL, 10,
		sturdyc.WithEarlyRefreshes(time.Second, 1500*time.Millisecond, RefreshTTL, 10*time.Millisecond),
		sturdyc.WithDistributedStorageEarlyRefreshes(st, time.Second))
	return &sturdycNode{rdb: rdb, c: c}, nil
}

func (n *sturdycNode) getOrLoad(ctx context.Context, key string, load func(context.Context, string) (string, error)) (string, error) {
	return sturdyc.GetOrFetch(ctx, n.c, key, func(ctx context.Context) (string, error) { return load(ctx, key) })
}

func (n *sturdycNode) close() { n.rdb.Close() }

// sturdycRedis is sturdyc's distributed storage on go-redis, as its README
// describes one: plain GET, SET with a TTL, MGET, pipelined SETs, DEL.
type sturdycRedis struct {
	rdb *redis.Client
	ttl time.Duration
}

func (s *sturdycRedis) Get(ctx context.Context, key string) ([]byte, bool) {
	b, err := s.rdb.Get(ctx, "sturdyc:"+key).Bytes()
	return b, err == nil
}

func (s *sturdycRedis) Set(ctx context.Context, key string, value []byte) {
	s.rdb.Set(ctx, "sturdyc:"+key, value, s.ttl)
}

func (s *sturdycRedis) GetBatch(ctx context.Context, keys []string) map[string][]byte {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = "sturdyc:" + k
	}
	vals, err := s.rdb.MGet(ctx, full...).Result()
	out := make(map[string][]byte, len(keys))
	if err != nil {
		return out
	}
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[keys[i]] = []byte(str)
		}
	}
	return out
}

func (s *sturdycRedis) SetBatch(ctx context.Context, records map[string][]byte) {
	pipe := s.rdb.Pipeline()
	for k, v := range records {
		pipe.Set(ctx, "sturdyc:"+k, v, s.ttl)
	}
	_, _ = pipe.Exec(ctx)
}

func (s *sturdycRedis) Delete(ctx context.Context, key string) { s.rdb.Del(ctx, "sturdyc:"+key) }

func (s *sturdycRedis) DeleteBatch(ctx context.Context, keys []string) {
	for _, k := range keys {
		s.Delete(ctx, k)
	}
}

// refreshResult is one system's run.
type refreshResult struct {
	lat, hotLat    []time.Duration // sorted read latencies after warmup: all keys, hot keys
	waited         int             // reads slower than RefreshWaited
	hotWaited      int
	loadsPerSec    float64
	hotLoadsPerSec float64 // loader calls for hot keys
	errors         int64
}

// runRefresh runs the scenario for sys: warmFor of reads not measured
// (every key's first load), then measureFor measured.
func runRefresh(ctx context.Context, sys refreshSystem, addr string, warmFor, measureFor time.Duration) (refreshResult, error) {
	var res refreshResult
	nodes := make([]loadingNode, 0, RefreshNodes)
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	flush := redis.NewClient(&redis.Options{Addr: addr})
	err := flush.FlushAll(ctx).Err() // each system starts cold
	flush.Close()
	if err != nil {
		return res, fmt.Errorf("FLUSHALL: %w", err)
	}
	for range RefreshNodes {
		n, err := sys.newNode(addr)
		if err != nil {
			return res, fmt.Errorf("%s: %w", sys.name, err)
		}
		nodes = append(nodes, n)
	}
	var loads, hotLoads atomic.Int64
	hot := make(map[string]bool, RefreshHot)
	for k := range RefreshHot {
		hot[fmt.Sprint(k)] = true
	}
	load := simulatedQuery(RefreshLoadCost, func(key string) {
		loads.Add(1)
		if hot[key] {
			hotLoads.Add(1)
		}
	})
	measureAt := time.Now().Add(warmFor)
	end := measureAt.Add(measureFor)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, n := range nodes {
		for j := range RefreshReaders {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), uint64(j)))
				z := rand.NewZipf(r, 1.1, 1, RefreshKeys-1)
				tick := time.NewTicker(time.Second * RefreshReaders / RefreshRate)
				defer tick.Stop()
				var mine, mineHot []time.Duration
				for now := range tick.C {
					if now.After(end) || ctx.Err() != nil {
						break
					}
					k := z.Uint64()
					t0 := time.Now()
					rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := n.getOrLoad(rctx, fmt.Sprint(k), load)
					cancel()
					if t0.Before(measureAt) {
						continue
					}
					if err != nil {
						atomic.AddInt64(&res.errors, 1)
					}
					d := time.Since(t0)
					mine = append(mine, d)
					if k < RefreshHot {
						mineHot = append(mineHot, d)
					}
				}
				mu.Lock()
				res.lat = append(res.lat, mine...)
				res.hotLat = append(res.hotLat, mineHot...)
				mu.Unlock()
			})
		}
	}
	sleepCtx(ctx, time.Until(measureAt))
	atMeasure, hotAtMeasure := loads.Load(), hotLoads.Load()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.loadsPerSec = float64(loads.Load()-atMeasure) / measureFor.Seconds()
	res.hotLoadsPerSec = float64(hotLoads.Load()-hotAtMeasure) / measureFor.Seconds()
	slices.Sort(res.lat)
	slices.Sort(res.hotLat)
	for _, d := range res.lat {
		if d > RefreshWaited {
			res.waited++
		}
	}
	for _, d := range res.hotLat {
		if d > RefreshWaited {
			res.hotWaited++
		}
	}
	return res, nil
}

// refreshTable runs the scenario for every system and returns its table.
func refreshTable(ctx context.Context, addr string, warmFor, measureFor time.Duration, progress func(string)) (*table, error) {
	t := &table{header: []string{"system", "reads", "p50 / p99 / p99.9", "waited for a load", "loader calls/s",
		fmt.Sprintf("hot %d keys: p99 / p99.9", RefreshHot), "hot: waited", "hot: loader calls/s", "errors", "note"}}
	for _, sys := range refreshSystems() {
		progress(sys.name)
		r, err := runRefresh(ctx, sys, addr, warmFor, measureFor)
		if err != nil {
			return nil, err
		}
		frac := func(n int, of []time.Duration) string {
			if len(of) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(len(of)))
		}
		t.add(sys.name, fmt.Sprint(len(r.lat)),
			fmtDur(percentile(r.lat, 50))+" / "+fmtDur(percentile(r.lat, 99))+" / "+fmtDur(percentile(r.lat, 99.9)),
			frac(r.waited, r.lat), fmt.Sprintf("%.0f", r.loadsPerSec),
			fmtDur(percentile(r.hotLat, 99))+" / "+fmtDur(percentile(r.hotLat, 99.9)),
			frac(r.hotWaited, r.hotLat), fmt.Sprintf("%.1f", r.hotLoadsPerSec),
			fmt.Sprint(r.errors), sys.note)
	}
	return t, nil
}
