package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gcache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/viccon/sturdyc"

	"github.com/tiercache/tiercache/tiered"
)

// loader is a scenario's database read for one key.
type loader func(ctx context.Context, key string) (string, error)

// batchLoader is a scenario's database read for many keys in one query; a
// key it leaves out does not exist.
type batchLoader func(ctx context.Context, keys []string) (map[string]string, error)

// node is one simulated replica of one system: its own Redis connections
// and its own local tier. All methods are safe for concurrent use.
type node interface {
	// get reads a key the scenario put there, the way an application reads
	// on its hot path (no loader).
	get(ctx context.Context, key string) (string, error)
	// getOrLoad is the system's cache-aside read: on a miss it calls load
	// and caches the answer, the way the system's docs recommend.
	getOrLoad(ctx context.Context, key string, load loader) (string, error)
	// write tells the cache a key's value changed, after the database
	// write, through the system's own write API.
	write(ctx context.Context, key, v string) error
	// del tells the cache a key changed without giving the new value (a
	// delete, or an update the application does not read back), through
	// the system's own delete API: the next read loads it.
	del(ctx context.Context, key string) error
	// localHits counts reads answered by the local tier, or -1 when the
	// system does not say.
	localHits() int64
	close()
}

// batchNode is a node with a batch read API.
type batchNode interface {
	getOrLoadMany(ctx context.Context, keys []string, load batchLoader) (map[string]string, error)
}

// nodeOptions are what a scenario sets on every system alike.
type nodeOptions struct {
	// ttl is how long a value lives in Redis (and locally, where the system
	// has one TTL for both). Default: 1h.
	ttl time.Duration
	// prefix keeps one scenario's keys apart from another's.
	prefix string
}

func (o nodeOptions) withDefaults() nodeOptions {
	if o.ttl == 0 {
		o.ttl = time.Hour
	}
	if o.prefix == "" {
		o.prefix = "b"
	}
	return o
}

// system describes one contestant.
type system struct {
	name string
	// newNode makes a replica talking to the Redis at addr.
	newNode func(addr string, o nodeOptions) (node, error)
	// local is false for raw go-redis: every read is a round trip.
	local bool
	// shared is false for raw ristretto: nodes share nothing.
	shared bool
	// tracking marks systems built on Redis client tracking (RESP3,
	// Redis 6+, not miniredis).
	tracking bool
	// batch says how the batch scenario calls it.
	batch string
	// batchFills is true when the system's batch read fills its local tier
	// key by key (go-redis CSC caches an MGET as one entry), so the
	// hot-path scenario can fill 65,536 keys in a few round trips.
	batchFills bool
	note       string
}

// peerLocalTTL is the local TTL given to go-redis/cache's TinyLFU, rueidis's
// DoCache and sturdyc: the bound their docs give on a replaced value.
const peerLocalTTL = time.Minute

// Names of the two raw baselines, which ratios are computed against.
const (
	sysTiercache = "tiercache"
	sysRistretto = "ristretto"
	sysRawRedis  = "go-redis"
)

// mixedSystems are the systems of the mixed scenario: every system, and
// tiercache with confirmed writes, whose point is freshness at Δ = 0 under
// writes, which only the mixed scenario measures.
func mixedSystems() []system {
	all := systems()
	confirmed := system{name: "tiercache confirmed", batchFills: true, local: true, shared: true,
		batch: "GetOrLoadMany", note: "Options.ConfirmWrites: a write returns once every node dropped the old value",
		newNode: func(addr string, o nodeOptions) (node, error) {
			return newTiercacheWith(addr, o, func(t *tiered.Options) { t.ConfirmWrites = true })
		}}
	return append(all[:1:1], append([]system{confirmed}, all[1:]...)...)
}

func systems() []system {
	return []system{
		{name: sysTiercache, batchFills: true, newNode: newTiercache, local: true, shared: true,
			batch: "GetOrLoadMany", note: "default options"},
		{name: "rueidis", batchFills: true, newNode: newRueidis, local: true, shared: true, tracking: true,
			batch: "DoMultiCache, then MSET of the misses", note: "DoCache, client TTL 1m"},
		{name: "go-redis CSC", newNode: newGoRedisCSC, local: true, shared: true, tracking: true,
			batch: "MGET (cached), then MSET of the misses", note: "go-redis v9 client-side caching (experimental), RESP3"},
		{name: "go-redis/cache", newNode: newGoRedisCache, local: true, shared: true,
			batch: "no batch API: 100 Once calls", note: "Once, TinyLFU local TTL 1m, no cross-node invalidation"},
		{name: "sturdyc", batchFills: true, newNode: newSturdyc, local: true, shared: true,
			batch: "GetOrFetchBatch", note: "distributed storage on go-redis, local refresh from it after 1s, TTL 1m"},
		{name: sysRawRedis, batchFills: true, newNode: newRawRedis, shared: true,
			batch: "MGET, then MSET of the misses", note: "baseline: GET, on a miss load and SET; no local tier"},
		{name: sysRistretto, batchFills: true, newNode: newRistretto, local: true,
			batch: "100 Gets, then the misses' Sets", note: "baseline: in-process only, nothing shared"},
	}
}

// newClient is the go-redis client every go-redis-based system gets: the
// deadline of each call's context is honoured on the socket, as the
// libraries' timeouts need.
func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
}

// tiercache

type tiercacheNode struct {
	rdb *redis.Client
	c   *tiered.Cache[string]
}

func newTiercache(addr string, o nodeOptions) (node, error) {
	return newTiercacheWith(addr, o, nil)
}

func newTiercacheWith(addr string, o nodeOptions, mod func(*tiered.Options)) (node, error) {
	o = o.withDefaults()
	rdb := newClient(addr)
	opts := tiered.Options{Redis: rdb, Namespace: o.prefix, TTL: o.ttl}
	if mod != nil {
		mod(&opts)
	}
	c, err := tiered.New[string](opts)
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("tiered.New: %w", err)
	}
	return &tiercacheNode{rdb: rdb, c: c}, nil
}

func (n *tiercacheNode) get(ctx context.Context, key string) (string, error) {
	return n.c.Get(ctx, key)
}

func (n *tiercacheNode) getOrLoad(ctx context.Context, key string, load loader) (string, error) {
	return n.c.GetOrLoad(ctx, key, tiered.Loader[string](load))
}

func (n *tiercacheNode) getOrLoadMany(ctx context.Context, keys []string, load batchLoader) (map[string]string, error) {
	return n.c.GetOrLoadMany(ctx, keys, func(ctx context.Context, keys []string) (map[string]string, error) {
		return load(ctx, keys)
	})
}

func (n *tiercacheNode) write(ctx context.Context, key, v string) error { return n.c.Set(ctx, key, v) }

func (n *tiercacheNode) del(ctx context.Context, key string) error { return n.c.Delete(ctx, key) }

func (n *tiercacheNode) localHits() int64 { return int64(n.c.Stats().L1.Hits) }

func (n *tiercacheNode) close() { n.c.Close(); n.rdb.Close() }

// rueidis client-side caching

type rueidisNode struct {
	c      rueidis.Client
	prefix string
	ttl    time.Duration
	hits   atomic.Int64
}

func newRueidis(addr string, o nodeOptions) (node, error) {
	o = o.withDefaults()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		return nil, fmt.Errorf("rueidis.NewClient: %w", err)
	}
	return &rueidisNode{c: c, prefix: "rue:" + o.prefix + ":", ttl: o.ttl}, nil
}

func (n *rueidisNode) get(ctx context.Context, key string) (string, error) {
	res := n.c.DoCache(ctx, n.c.B().Get().Key(n.prefix+key).Cache(), peerLocalTTL)
	if res.IsCacheHit() {
		n.hits.Add(1)
	}
	return res.ToString()
}

// getOrLoad is cache-aside by hand, as rueidis's docs show it: DoCache the
// GET; on a miss load and SET (tracking then tells every node); on an
// error serve the loader's value.
func (n *rueidisNode) getOrLoad(ctx context.Context, key string, load loader) (string, error) {
	v, err := n.get(ctx, key)
	if err == nil {
		return v, nil
	}
	v, lerr := load(ctx, key)
	if lerr != nil {
		return "", lerr
	}
	if rueidis.IsRedisNil(err) {
		_ = n.c.Do(ctx, n.c.B().Set().Key(n.prefix+key).Value(v).Ex(n.ttl).Build()).Error()
	}
	return v, nil
}

func (n *rueidisNode) getOrLoadMany(ctx context.Context, keys []string, load batchLoader) (map[string]string, error) {
	cmds := make([]rueidis.CacheableTTL, len(keys))
	for i, k := range keys {
		cmds[i] = rueidis.CT(n.c.B().Get().Key(n.prefix+k).Cache(), peerLocalTTL)
	}
	out := make(map[string]string, len(keys))
	var missing []string
	for i, res := range n.c.DoMultiCache(ctx, cmds...) {
		if res.IsCacheHit() {
			n.hits.Add(1)
		}
		v, err := res.ToString()
		switch {
		case err == nil:
			out[keys[i]] = v
		case rueidis.IsRedisNil(err):
			missing = append(missing, keys[i])
		default:
			return nil, err
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	loaded, err := load(ctx, missing)
	if err != nil {
		return nil, err
	}
	sets := make(rueidis.Commands, 0, len(loaded))
	for k, v := range loaded {
		out[k] = v
		sets = append(sets, n.c.B().Set().Key(n.prefix+k).Value(v).Ex(n.ttl).Build())
	}
	for _, r := range n.c.DoMulti(ctx, sets...) {
		if err := r.Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// write is a plain SET: Redis tracking tells every node that cached the key.
func (n *rueidisNode) write(ctx context.Context, key, v string) error {
	return n.c.Do(ctx, n.c.B().Set().Key(n.prefix+key).Value(v).Ex(n.ttl).Build()).Error()
}

func (n *rueidisNode) del(ctx context.Context, key string) error {
	return n.c.Do(ctx, n.c.B().Del().Key(n.prefix+key).Build()).Error()
}

func (n *rueidisNode) localHits() int64 { return n.hits.Load() }

func (n *rueidisNode) close() { n.c.Close() }

// go-redis v9 client-side caching

type goRedisCSCNode struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration
}

func newGoRedisCSC(addr string, o nodeOptions) (node, error) {
	o = o.withDefaults()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3, ContextTimeoutEnabled: true,
		ClientSideCacheConfig: &redis.ClientSideCacheConfig{MaxEntries: 200_000}})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("go-redis CSC: PING: %w", err)
	}
	return &goRedisCSCNode{rdb: rdb, prefix: "csc:" + o.prefix + ":", ttl: o.ttl}, nil
}

func (n *goRedisCSCNode) get(ctx context.Context, key string) (string, error) {
	return n.rdb.Get(ctx, n.prefix+key).Result()
}

func (n *goRedisCSCNode) getOrLoad(ctx context.Context, key string, load loader) (string, error) {
	return cacheAside(ctx, key, load, n.get, func(ctx context.Context, k, v string) error {
		return n.rdb.Set(ctx, n.prefix+k, v, n.ttl).Err()
	})
}

func (n *goRedisCSCNode) getOrLoadMany(ctx context.Context, keys []string, load batchLoader) (map[string]string, error) {
	return mgetAside(ctx, n.rdb, n.prefix, n.ttl, keys, load)
}

func (n *goRedisCSCNode) write(ctx context.Context, key, v string) error {
	return n.rdb.Set(ctx, n.prefix+key, v, n.ttl).Err()
}

func (n *goRedisCSCNode) del(ctx context.Context, key string) error {
	return n.rdb.Del(ctx, n.prefix+key).Err()
}

func (n *goRedisCSCNode) localHits() int64 { return int64(n.rdb.CSCStats().Hits) }

func (n *goRedisCSCNode) close() { n.rdb.Close() }

// go-redis/cache with its local TinyLFU

type goRedisCacheNode struct {
	rdb    *redis.Client
	lfu    *countingLocal
	c      *gcache.Cache
	prefix string
	ttl    time.Duration
}

// countingLocal counts go-redis/cache's local hits.
type countingLocal struct {
	*gcache.TinyLFU
	hits atomic.Int64
}

func (l *countingLocal) Get(key string) ([]byte, bool) {
	b, ok := l.TinyLFU.Get(key)
	if ok {
		l.hits.Add(1)
	}
	return b, ok
}

func newGoRedisCache(addr string, o nodeOptions) (node, error) {
	o = o.withDefaults()
	rdb := newClient(addr)
	lfu := &countingLocal{TinyLFU: gcache.NewTinyLFU(200_000, min(peerLocalTTL, o.ttl))}
	c := gcache.New(&gcache.Options{Redis: rdb, LocalCache: lfu})
	return &goRedisCacheNode{rdb: rdb, lfu: lfu, c: c, prefix: "grc:" + o.prefix + ":", ttl: o.ttl}, nil
}

func (n *goRedisCacheNode) get(ctx context.Context, key string) (string, error) {
	var v string
	err := n.c.Get(ctx, n.prefix+key, &v)
	return v, err
}

func (n *goRedisCacheNode) getOrLoad(ctx context.Context, key string, load loader) (string, error) {
	var v string
	err := n.c.Once(&gcache.Item{Ctx: ctx, Key: n.prefix + key, Value: &v, TTL: n.ttl,
		Do: func(it *gcache.Item) (any, error) { return load(it.Ctx, key) }})
	return v, err
}

func (n *goRedisCacheNode) write(ctx context.Context, key, v string) error {
	return n.c.Set(&gcache.Item{Ctx: ctx, Key: n.prefix + key, Value: v, TTL: n.ttl})
}

func (n *goRedisCacheNode) del(ctx context.Context, key string) error {
	return n.c.Delete(ctx, n.prefix+key)
}

func (n *goRedisCacheNode) localHits() int64 { return n.lfu.hits.Load() }

func (n *goRedisCacheNode) close() { n.rdb.Close() }

// sturdyc with its distributed storage on go-redis

type sturdycNode struct {
	rdb  *redis.Client
	st   *sturdycRedis
	c    *sturdyc.Client[string]
	hits *sturdycHits
}

// sturdycHits is a sturdyc.MetricsRecorder that counts local hits.
type sturdycHits struct{ n atomic.Int64 }

func (h *sturdycHits) CacheHit()                   { h.n.Add(1) }
func (h *sturdycHits) CacheMiss()                  {}
func (h *sturdycHits) AsynchronousRefresh()        {}
func (h *sturdycHits) SynchronousRefresh()         {}
func (h *sturdycHits) MissingRecord()              {}
func (h *sturdycHits) ForcedEviction()             {}
func (h *sturdycHits) EntriesEvicted(int)          {}
func (h *sturdycHits) ShardIndex(int)              {}
func (h *sturdycHits) CacheBatchRefreshSize(int)   {}
func (h *sturdycHits) ObserveCacheSize(func() int) {}

func newSturdyc(addr string, o nodeOptions) (node, error) {
	o = o.withDefaults()
	return newSturdycWith(addr, o, min(peerLocalTTL, o.ttl), time.Second)
}

// newSturdycWith configures sturdyc as its README's distributed-storage
// example does: early refreshes, and a local value older than refreshAfter
// is refreshed from Redis (or the loader) in the background.
func newSturdycWith(addr string, o nodeOptions, ttl, refreshAfter time.Duration) (node, error) {
	rdb := newClient(addr)
	st := &sturdycRedis{rdb: rdb, ttl: o.ttl, prefix: "sturdyc:" + o.prefix + ":"}
	hits := &sturdycHits{}
	c := sturdyc.New[string](200_000, 10, ttl, 10,
		sturdyc.WithEarlyRefreshes(refreshAfter, refreshAfter*3/2, ttl, 10*time.Millisecond),
		sturdyc.WithDistributedStorageEarlyRefreshes(st, refreshAfter),
		sturdyc.WithMetrics(hits))
	return &sturdycNode{rdb: rdb, st: st, c: c, hits: hits}, nil
}

func (n *sturdycNode) get(ctx context.Context, key string) (string, error) {
	if v, ok := n.c.Get(key); ok {
		return v, nil
	}
	return "", errMiss
}

func (n *sturdycNode) getOrLoad(ctx context.Context, key string, load loader) (string, error) {
	return sturdyc.GetOrFetch(ctx, n.c, key, func(ctx context.Context) (string, error) { return load(ctx, key) })
}

func (n *sturdycNode) getOrLoadMany(ctx context.Context, keys []string, load batchLoader) (map[string]string, error) {
	// The identity key function: the bench's keys are already unique.
	return sturdyc.GetOrFetchBatch(ctx, n.c, keys, func(id string) string { return id }, sturdyc.BatchFetchFn[string](load))
}

// write drops the key from this node and from Redis, as sturdyc's docs
// suggest for a changed record; other nodes refresh it from Redis or the
// database after refreshAfter.
func (n *sturdycNode) write(ctx context.Context, key, _ string) error {
	n.c.Delete(key)
	return n.rdb.Del(ctx, n.st.prefix+key).Err()
}

func (n *sturdycNode) del(ctx context.Context, key string) error { return n.write(ctx, key, "") }

func (n *sturdycNode) localHits() int64 { return n.hits.n.Load() }

func (n *sturdycNode) close() { n.rdb.Close() }

// sturdycRedis is sturdyc's distributed storage on go-redis, as its README
// describes one: plain GET, SET with a TTL, MGET, pipelined SETs, DEL.
type sturdycRedis struct {
	rdb    *redis.Client
	ttl    time.Duration
	prefix string
}

func (s *sturdycRedis) Get(ctx context.Context, key string) ([]byte, bool) {
	b, err := s.rdb.Get(ctx, s.prefix+key).Bytes()
	return b, err == nil
}

func (s *sturdycRedis) Set(ctx context.Context, key string, value []byte) {
	s.rdb.Set(ctx, s.prefix+key, value, s.ttl)
}

func (s *sturdycRedis) GetBatch(ctx context.Context, keys []string) map[string][]byte {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.prefix + k
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
		pipe.Set(ctx, s.prefix+k, v, s.ttl)
	}
	_, _ = pipe.Exec(ctx)
}

func (s *sturdycRedis) Delete(ctx context.Context, key string) { s.rdb.Del(ctx, s.prefix+key) }

func (s *sturdycRedis) DeleteBatch(ctx context.Context, keys []string) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.prefix + k
	}
	s.rdb.Del(ctx, full...)
}

// raw go-redis

type rawRedisNode struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration
}

func newRawRedis(addr string, o nodeOptions) (node, error) {
	o = o.withDefaults()
	return &rawRedisNode{rdb: newClient(addr), prefix: "raw:" + o.prefix + ":", ttl: o.ttl}, nil
}

func (n *rawRedisNode) get(ctx context.Context, key string) (string, error) {
	return n.rdb.Get(ctx, n.prefix+key).Result()
}

func (n *rawRedisNode) getOrLoad(ctx context.Context, key string, load loader) (string, error) {
	return cacheAside(ctx, key, load, n.get, func(ctx context.Context, k, v string) error {
		return n.rdb.Set(ctx, n.prefix+k, v, n.ttl).Err()
	})
}

func (n *rawRedisNode) getOrLoadMany(ctx context.Context, keys []string, load batchLoader) (map[string]string, error) {
	return mgetAside(ctx, n.rdb, n.prefix, n.ttl, keys, load)
}

func (n *rawRedisNode) write(ctx context.Context, key, v string) error {
	return n.rdb.Set(ctx, n.prefix+key, v, n.ttl).Err()
}

func (n *rawRedisNode) del(ctx context.Context, key string) error {
	return n.rdb.Del(ctx, n.prefix+key).Err()
}

func (n *rawRedisNode) localHits() int64 { return 0 }

func (n *rawRedisNode) close() { n.rdb.Close() }

// cacheAside is the hand-written cache-aside read over go-redis: GET; on
// redis.Nil load and SET; on another error serve the loader's value.
func cacheAside(ctx context.Context, key string, load loader,
	get func(context.Context, string) (string, error), set func(context.Context, string, string) error) (string, error) {
	v, err := get(ctx, key)
	if err == nil {
		return v, nil
	}
	v, lerr := load(ctx, key)
	if lerr != nil {
		return "", lerr
	}
	if errors.Is(err, redis.Nil) {
		_ = set(ctx, key, v)
	}
	return v, nil
}

// mgetAside is the batch read over go-redis: one MGET, one query for the
// misses, one pipelined round of SETs.
func mgetAside(ctx context.Context, rdb *redis.Client, prefix string, ttl time.Duration, keys []string, load batchLoader) (map[string]string, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = prefix + k
	}
	vals, err := rdb.MGet(ctx, full...).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	var missing []string
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[keys[i]] = s
		} else {
			missing = append(missing, keys[i])
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	loaded, err := load(ctx, missing)
	if err != nil {
		return nil, err
	}
	pipe := rdb.Pipeline()
	for k, v := range loaded {
		out[k] = v
		pipe.Set(ctx, prefix+k, v, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// raw ristretto

type ristrettoNode struct {
	c    *ristretto.Cache[string, string]
	ttl  time.Duration
	hits atomic.Int64
}

func newRistretto(_ string, o nodeOptions) (node, error) {
	o = o.withDefaults()
	c, err := ristretto.NewCache(&ristretto.Config[string, string]{
		NumCounters: 2_000_000, MaxCost: 256 << 20, BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("ristretto.NewCache: %w", err)
	}
	return &ristrettoNode{c: c, ttl: o.ttl}, nil
}

var errMiss = errors.New("bench: local miss")

func (n *ristrettoNode) get(_ context.Context, key string) (string, error) {
	v, ok := n.c.Get(key)
	if !ok {
		return "", errMiss
	}
	return v, nil
}

func (n *ristrettoNode) getOrLoad(ctx context.Context, key string, load loader) (string, error) {
	if v, ok := n.c.Get(key); ok {
		n.hits.Add(1)
		return v, nil
	}
	v, err := load(ctx, key)
	if err != nil {
		return "", err
	}
	n.c.SetWithTTL(key, v, int64(len(v)), n.ttl)
	return v, nil
}

func (n *ristrettoNode) getOrLoadMany(ctx context.Context, keys []string, load batchLoader) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	var missing []string
	for _, k := range keys {
		if v, ok := n.c.Get(k); ok {
			n.hits.Add(1)
			out[k] = v
		} else {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	loaded, err := load(ctx, missing)
	if err != nil {
		return nil, err
	}
	for k, v := range loaded {
		out[k] = v
		n.c.SetWithTTL(k, v, int64(len(v)), n.ttl)
	}
	return out, nil
}

// write replaces the key in this node only: raw ristretto shares nothing.
func (n *ristrettoNode) write(_ context.Context, key, v string) error {
	n.c.SetWithTTL(key, v, int64(len(v)), n.ttl)
	n.c.Wait()
	return nil
}

func (n *ristrettoNode) del(_ context.Context, key string) error {
	n.c.Del(key)
	return nil
}

func (n *ristrettoNode) localHits() int64 { return n.hits.Load() }

func (n *ristrettoNode) close() { n.c.Close() }

// skipReason says why sys cannot run on a Redis of this version and kind,
// or "" when it can.
func skipReason(sys system, env Env) string {
	if !sys.tracking {
		return ""
	}
	if env.RedisKind == "miniredis" {
		return "skipped: miniredis has no client tracking"
	}
	if major(env.Redis) < 6 {
		return "skipped: needs Redis 6+ client tracking"
	}
	return ""
}

// keyName is the i-th key of a scenario.
func keyName(i int) string { return "k" + strconv.Itoa(i) }

// newNodes makes count nodes with mk(i); on an error it closes the ones
// already made. The caller closes the nodes with [closeAll].
func newNodes(count int, mk func(i int) (node, error)) ([]node, error) {
	nodes := make([]node, 0, count)
	for i := range count {
		n, err := mk(i)
		if err != nil {
			closeAll(nodes)
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// closeAll closes nodes at once: a client whose connections a fault left
// hanging may take a while to close, and the nodes wait for nothing shared.
func closeAll(nodes []node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(n.close)
	}
	wg.Wait()
}
