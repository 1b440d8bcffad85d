package main

import (
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// defaultNamespace prefixes the catalog's Redis keys ("catalog-products:42")
// and scopes its invalidations.
const defaultNamespace = "catalog-products"

// replica is what one process of the service holds: its own Redis client,
// cache (with its own invalidation bus), repository, metrics registry and
// HTTP handler. The demo and the tests run several in one process; each
// behaves as a separate process would, but for sharing the *sql.DB.
type replica struct {
	rdb     *redis.Client
	cache   *tiered.Cache[Product]
	repo    *ProductRepository
	handler http.Handler
}

type replicaConfig struct {
	DB        *sql.DB
	RedisAddr string
	Namespace string // default defaultNamespace
	Logger    *slog.Logger
}

// cacheOptions are the catalog's cache settings; every field not set here
// keeps the library's default.
func cacheOptions(rdb redis.UniversalClient, namespace string, logger *slog.Logger) tiered.Options {
	return tiered.Options{
		Redis:     rdb,
		Namespace: namespace,
		// Products change rarely and are read often. TTL is also the bound
		// on how long a row can outlive a change whose invalidation failed
		// (see ProductRepository.invalidate).
		TTL:      5 * time.Minute,
		LocalTTL: time.Minute,
		// A product query takes milliseconds, so a load still running after
		// 3 s means the database is in trouble. LeaseWait keeps its
		// default, half of LoadTimeout: a replica waits up to 1.5 s for
		// another replica's load of the same product (one query
		// cluster-wide), and has the rest to query it itself if that
		// replica died holding the lease.
		LoadTimeout: 3 * time.Second,
		// Read-your-writes across replicas: a PUT, POST or DELETE returns
		// only once every replica has dropped the old row (a round trip to
		// the slowest replica; up to MaxStaleness when one cannot answer),
		// so the client's next GET, on whichever replica, gets the new one.
		ConfirmWrites: true,
		Logger:        logger,
	}
}

// newReplica starts a replica. It does not wait for Redis: the cache reads
// through the database until its bus proves the subscription (call
// cache.WaitReady to wait). Close it when done; it does not close c.DB.
func newReplica(c replicaConfig) (*replica, error) {
	if c.Namespace == "" {
		c.Namespace = defaultNamespace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	// Any client works: the cache bounds every call by its RedisTimeout.
	// ContextTimeoutEnabled lets go-redis itself cut a call short there,
	// which spares the cache a goroutine per Redis call.
	rdb := redis.NewClient(&redis.Options{Addr: c.RedisAddr, ContextTimeoutEnabled: true})
	cache, err := tiered.New[Product](cacheOptions(rdb, c.Namespace, c.Logger))
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	repo := NewProductRepository(c.DB, cache, c.Logger)

	// The service's own registry: the library never touches the default
	// one. The bus collector is registered once per bus.
	reg := prometheus.NewRegistry()
	err = registerAll(reg,
		metrics.NewCacheCollector(cache, metrics.Options{}),
		metrics.NewBusCollector(cache.Bus(), metrics.Options{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "catalog_db_queries_total",
			Help: "SQL statements the product repository sent to the database.",
		}, func() float64 { return float64(repo.Stats().Queries) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "catalog_cache_invalidation_failures_total",
			Help: "Committed product changes whose cache invalidation failed (the old row may be served until it expires).",
		}, func() float64 { return float64(repo.Stats().CacheWriteFailures) }),
	)
	if err != nil {
		cache.Close()
		rdb.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &replica{
		rdb:     rdb,
		cache:   cache,
		repo:    repo,
		handler: newHandler(repo, func() tiered.State { return cache.Stats().State }, reg, c.Logger),
	}, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the cache (which waits for its loads) and then the Redis
// client.
func (r *replica) Close() {
	r.cache.Close()
	r.rdb.Close()
}

// l1HitRatio is the share of this replica's L1 lookups that hit, counted as
// tiercache_requests_total{tier="l1"} counts them (bypassed lookups, made
// while the bus could not prove its subscription, are misses here).
func (r *replica) l1HitRatio() float64 {
	st := r.cache.Stats()
	n := st.L1.Hits + st.L1.Misses + st.L1Bypassed
	if n == 0 {
		return 0
	}
	return float64(st.L1.Hits) / float64(n)
}
