package tiered

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// testOptions are fast-moving settings for tests: short heartbeats so that
// liveness is proven quickly, and no jitter so TTLs are exact.
func testOptions(s *redistest.Server, t testing.TB) Options {
	return Options{
		Redis:             s.Client(t),
		Namespace:         "test",
		HeartbeatInterval: 50 * time.Millisecond,
		MaxStaleness:      time.Second,
		LeaseWait:         time.Second,
		DisableJitter:     true,
	}
}

// newCacheOn makes a cache with its own bus on rdb (a Cluster or
// Sentinel client), with testOptions' timings, and closes it at cleanup.
func newCacheOn(t testing.TB, rdb redis.UniversalClient, mod func(*Options)) *Cache[string] {
	t.Helper()
	o := Options{
		Redis:             rdb,
		Namespace:         "test",
		HeartbeatInterval: 50 * time.Millisecond,
		MaxStaleness:      time.Second,
		RedisTimeout:      300 * time.Millisecond,
		DisableJitter:     true,
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New[string](o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	waitUsable(t, c)
	return c
}

// newNode makes a cache with its own client and its own bus, as a separate
// process would have, and closes it at cleanup.
func newNode[V any](t testing.TB, s *redistest.Server, mod func(*Options)) *Cache[V] {
	t.Helper()
	o := testOptions(s, t)
	if mod != nil {
		mod(&o)
	}
	c, err := New[V](o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	waitUsable(t, c)
	return c
}

// waitUsable polls until the cache's bus has proven its subscription, with a
// deadline: there is no event to wait on from outside the bus.
func waitUsable[V any](t testing.TB, c *Cache[V]) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool { return c.bus.Usable() }, "bus usable")
}

// eventually polls cond every millisecond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, d)
		}
		time.Sleep(time.Millisecond) // poll interval with a deadline
	}
}

// len is the number of keys with a load in flight.
func (g *flights[V]) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}
