package tiered

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// aclUser creates user on s with the given ACL rules (after "on >pw") and
// returns a client that logs in as it.
func aclUser(t *testing.T, s *redistest.Server, user string, rules ...string) *redis.Client {
	t.Helper()
	args := []any{"ACL", "SETUSER", user, "reset", "on", ">pw"}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := s.Client(t).Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER %s %v: %v", user, rules, err)
	}
	o := s.Options()
	o.Username, o.Password = user, "pw"
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// leastPrivilege is the ACL the README documents for namespace "test" on
// the default channel: the namespace's keys, the channel's prefix, and the
// commands the cache sends.
var leastPrivilege = []string{"~test:*", "&tiercache:invalidation*",
	"+get", "+set", "+del", "+strlen", "+mget", "+getex", "+eval", "+evalsha", "+publish", "+subscribe",
	"+unsubscribe", "+pubsub|numsub", "+ping", "+wait", "+hello", "+auth"}

// clusterPrivilege is what the README's Cluster line adds: the slot map.
var clusterPrivilege = []string{"+cluster|slots", "+cluster|shards", "+readonly"}

// TestLeastPrivilegeACL: with exactly the README's ACL line, everything the
// cache does works: the bus proves itself, writes, reads, loads and
// refreshes, and a second node hears the writes.
func TestLeastPrivilegeACL(t *testing.T) {
	s := redistest.Real(t)
	mk := func() *Cache[string] {
		return newCacheOn(t, aclUser(t, s, "app", leastPrivilege...), func(o *Options) {
			o.TTL, o.RefreshAhead = 2*time.Second, time.Second
		})
	}
	a, b := mk(), mk()
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	warm(t, []*Cache[string]{b}, "k", "v1")
	if err := a.SetMany(ctx, map[string]string{"k": "v2", "j": "w"}); err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	eventually(t, time.Second, func() bool { v, _ := b.Get(ctx, "k"); return v == "v2" }, "b sees the SetMany")
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	load := func(_ context.Context, k string) (string, error) { return "db-" + k, nil }
	eventually(t, time.Second, func() bool { v, _ := b.GetOrLoad(ctx, "k", load); return v == "db-k" }, "b loads k after the Delete")
	if m, err := b.GetOrLoadMany(ctx, []string{"x", "y"}, func(_ context.Context, ks []string) (map[string]string, error) {
		return map[string]string{"x": "X", "y": "Y"}, nil
	}); err != nil || len(m) != 2 {
		t.Errorf("GetOrLoadMany = %v, %v", m, err)
	}
	if err := a.Clear(ctx); err != nil {
		t.Errorf("Clear: %v", err)
	}
	// A refresh ahead takes a lock in the namespace.
	eventually(t, 5*time.Second, func() bool {
		_, _ = b.GetOrLoad(ctx, "k", load)
		return b.Stats().Refreshes > 0 && b.Stats().RefreshFailures == 0
	}, "a refresh-ahead ran")
	if log := s.Client(t).Do(ctx, "ACL", "LOG").Val(); fmt.Sprint(log) != "[]" {
		t.Errorf("ACL LOG after a run with the least-privilege ACL: %v", log)
	}
	if st := a.Stats(); st.L2Errors != 0 || st.WriteErrors != 0 {
		t.Errorf("errors with the least-privilege ACL: %+v", st)
	}
	if st := b.Stats(); st.L2Errors != 0 {
		t.Errorf("reader errors with the least-privilege ACL: L2Errors %d; L2 %+v", st.L2Errors, st.L2)
	}
}

// TestNoChannelRights: a user made the Redis 7 default way (no channel
// rights) cannot run the bus or announce writes. WaitReady says why, a Set
// fails with a *ConfigError that is not ErrUnavailable, writes nothing
// (a write that cannot be announced must not happen), and does not count
// as an outage.
func TestNoChannelRights(t *testing.T) {
	s := redistest.Real(t)
	rdb := aclUser(t, s, "nochan", "~test:*", "resetchannels", "+@all")
	c, err := New[string](Options{Redis: rdb, Namespace: "test", HeartbeatInterval: 50 * time.Millisecond, MaxStaleness: time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = c.WaitReady(ctx)
	var ce *ConfigError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady = %v; want the deadline, carrying a *ConfigError", err)
	} else if ce.Hint == "" {
		t.Errorf("ConfigError without a hint: %v", ce)
	}
	for range 5 { // more than BreakerThreshold
		err = c.Set(context.Background(), "k", "v")
		if !errors.As(err, &ce) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("Set = %v; want a *ConfigError, not ErrUnavailable", err)
		}
	}
	if n, err := s.Client(t).Exists(context.Background(), "test:k").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS test:k = %d, %v after Sets refused for want of channel rights; want nothing written", n, err)
	}
	if c.Stats().L2.BreakerOpen {
		t.Errorf("the breaker opened on permission errors")
	}
}

// TestTLS: the cache works over TLS (a redis-server with a certificate
// from a throwaway authority made by the test): writes, loads and the bus.
func TestTLS(t *testing.T) {
	s, tc := redistest.RealTLS(t)
	mk := func() *Cache[string] {
		rdb := redis.NewClient(&redis.Options{Addr: s.TLSAddr, TLSConfig: tc})
		t.Cleanup(func() { _ = rdb.Close() })
		return newCacheOn(t, rdb, nil)
	}
	a, b := mk(), mk()
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatalf("Set over TLS: %v", err)
	}
	warm(t, []*Cache[string]{b}, "k", "v1")
	if err := a.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, func() bool { v, _ := b.Get(ctx, "k"); return v == "v2" }, "b sees the write over TLS")
	plain := redis.NewClient(&redis.Options{Addr: s.TLSAddr})
	t.Cleanup(func() { _ = plain.Close() })
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("a client without TLS reached the TLS port: the test does not exercise TLS")
	}
}
