package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gcache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
)

// node is one simulated replica of one library: its own Redis connections
// and its own local tier. A node is used by one goroutine at a time, except
// get, which the hot-path case calls from several.
type node interface {
	// get reads key the way an application would on its hot path.
	get(ctx context.Context, key string) (string, error)
	// probe reads key and reports whether the answer came from the local
	// tier. It may be slower than get; it is never timed.
	probe(ctx context.Context, key string) (v string, local bool, err error)
	// write replaces key's value through the library's own write API.
	write(ctx context.Context, key, v string) error
	close()
}

// library describes one contestant.
type library struct {
	name string
	// newNode makes a replica talking to the Redis at addr.
	newNode func(addr string) (node, error)
	// localTier is false for raw go-redis: every read is a round trip.
	localTier bool
	// shared is false for raw ristretto: two nodes share nothing, so a
	// cross-node staleness trial means nothing.
	shared bool
	// invalidates is false when a write on one node never reaches another
	// node's local tier (go-redis/cache): its trials wait out the cap, so
	// they run concurrently to keep the run short.
	invalidates bool
	note        string
}

// peerLocalTTL is the local TTL given to go-redis/cache's TinyLFU and to
// rueidis's DoCache: long enough that only invalidation can make a node
// fresh within a trial.
const peerLocalTTL = time.Minute

func libraries() []library {
	return []library{
		{name: "tiercache", newNode: newTiercache, localTier: true, shared: true, invalidates: true},
		{name: "go-redis/cache", newNode: newGoRedisCache, localTier: true, shared: true,
			note: "TinyLFU local TTL 1m, no cross-node invalidation"},
		{name: "rueidis", newNode: newRueidis, localTier: true, shared: true, invalidates: true,
			note: "DoCache, RESP3 tracking, client TTL 1m"},
		{name: "go-redis GET", newNode: newRawRedis, shared: true, invalidates: true,
			note: "baseline: no local tier"},
		{name: "ristretto Get", newNode: newRistretto, localTier: true,
			note: "baseline: in-process only"},
	}
}

// tiercache

type tiercacheNode struct {
	rdb *redis.Client
	c   *tiered.Cache[string]
}

func newTiercache(addr string) (node, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c, err := tiered.New[string](tiered.Options{Redis: rdb, Namespace: "bench"})
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("tiered.New: %w", err)
	}
	return &tiercacheNode{rdb: rdb, c: c}, nil
}

func (n *tiercacheNode) get(ctx context.Context, key string) (string, error) {
	return n.c.Get(ctx, key)
}

// probe tells an L1 hit by the L1 hit counter; only one goroutine reads
// the node while probing.
func (n *tiercacheNode) probe(ctx context.Context, key string) (string, bool, error) {
	before := n.c.Stats().L1.Hits
	v, err := n.c.Get(ctx, key)
	return v, n.c.Stats().L1.Hits > before, err
}

func (n *tiercacheNode) write(ctx context.Context, key, v string) error {
	return n.c.Set(ctx, key, v)
}

func (n *tiercacheNode) close() {
	n.c.Close()
	n.rdb.Close()
}

// go-redis/cache with its local TinyLFU

type goRedisCacheNode struct {
	rdb *redis.Client
	lfu *gcache.TinyLFU
	c   *gcache.Cache
}

func newGoRedisCache(addr string) (node, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	lfu := gcache.NewTinyLFU(100_000, peerLocalTTL)
	c := gcache.New(&gcache.Options{Redis: rdb, LocalCache: lfu})
	return &goRedisCacheNode{rdb: rdb, lfu: lfu, c: c}, nil
}

func (n *goRedisCacheNode) get(ctx context.Context, key string) (string, error) {
	var v string
	err := n.c.Get(ctx, "grc:"+key, &v)
	return v, err
}

func (n *goRedisCacheNode) probe(ctx context.Context, key string) (string, bool, error) {
	_, local := n.lfu.Get("grc:" + key)
	v, err := n.get(ctx, key)
	return v, local, err
}

func (n *goRedisCacheNode) write(ctx context.Context, key, v string) error {
	return n.c.Set(&gcache.Item{Ctx: ctx, Key: "grc:" + key, Value: v, TTL: time.Hour})
}

func (n *goRedisCacheNode) close() { n.rdb.Close() }

// rueidis client-side caching

type rueidisNode struct {
	c rueidis.Client
}

func newRueidis(addr string) (node, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		return nil, fmt.Errorf("rueidis.NewClient: %w", err)
	}
	return &rueidisNode{c: c}, nil
}

func (n *rueidisNode) get(ctx context.Context, key string) (string, error) {
	v, _, err := n.probe(ctx, key)
	return v, err
}

func (n *rueidisNode) probe(ctx context.Context, key string) (string, bool, error) {
	res := n.c.DoCache(ctx, n.c.B().Get().Key("rue:"+key).Cache(), peerLocalTTL)
	v, err := res.ToString()
	return v, res.IsCacheHit(), err
}

// write is a plain SET: Redis tracking tells every node that cached the key.
func (n *rueidisNode) write(ctx context.Context, key, v string) error {
	return n.c.Do(ctx, n.c.B().Set().Key("rue:"+key).Value(v).Build()).Error()
}

func (n *rueidisNode) close() { n.c.Close() }

// raw go-redis GET

type rawRedisNode struct {
	rdb *redis.Client
}

func newRawRedis(addr string) (node, error) {
	return &rawRedisNode{rdb: redis.NewClient(&redis.Options{Addr: addr})}, nil
}

func (n *rawRedisNode) get(ctx context.Context, key string) (string, error) {
	return n.rdb.Get(ctx, "raw:"+key).Result()
}

func (n *rawRedisNode) probe(ctx context.Context, key string) (string, bool, error) {
	v, err := n.get(ctx, key)
	return v, false, err
}

func (n *rawRedisNode) write(ctx context.Context, key, v string) error {
	return n.rdb.Set(ctx, "raw:"+key, v, time.Hour).Err()
}

func (n *rawRedisNode) close() { n.rdb.Close() }

// raw ristretto Get

type ristrettoNode struct {
	c *ristretto.Cache[string, string]
}

func newRistretto(string) (node, error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, string]{
		NumCounters: 1_000_000, MaxCost: 64 << 20, BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("ristretto.NewCache: %w", err)
	}
	return &ristrettoNode{c: c}, nil
}

var errMiss = errors.New("bench: ristretto miss")

func (n *ristrettoNode) get(_ context.Context, key string) (string, error) {
	v, ok := n.c.Get(key)
	if !ok {
		return "", errMiss
	}
	return v, nil
}

func (n *ristrettoNode) probe(ctx context.Context, key string) (string, bool, error) {
	v, err := n.get(ctx, key)
	return v, err == nil, err
}

func (n *ristrettoNode) write(_ context.Context, key, v string) error {
	n.c.Set(key, v, int64(len(v)))
	n.c.Wait()
	return nil
}

func (n *ristrettoNode) close() { n.c.Close() }
