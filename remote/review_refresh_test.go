package remote_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// betweenPipelined is a hook that, once armed, runs the first command of
// the next pipeline that deletes key, then calls between, then runs the
// rest: the interleaving of another client's command between two commands
// of a plain (non-transactional) pipeline, which Redis allows.
type betweenPipelined struct {
	mu      sync.Mutex
	key     string
	between func()
}

func (*betweenPipelined) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*betweenPipelined) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *betweenPipelined) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		fn := h.between
		if fn != nil && len(cmds) > 1 && cmds[0].Name() == "del" && len(cmds[0].Args()) > 1 && cmds[0].Args()[1] == h.key {
			h.between = nil
		} else {
			fn = nil
		}
		h.mu.Unlock()
		if fn == nil {
			return next(ctx, cmds)
		}
		err := next(ctx, cmds[:1])
		fn()
		if err2 := next(ctx, cmds[1:]); err == nil {
			err = err2
		}
		return err
	}
}

// TestReviewShardedDeleteRacesFinishRefresh: on a client that is neither
// a Client nor a ClusterClient (a Ring), writes go as a plain pipeline, so
// a FinishRefresh could run between a value's DEL and its lock's DEL and
// undo the Delete in L2 (promise 3); and a Ring may put a key and its lock
// on different shards. So refreshes are not offered there: BeginRefresh
// says they are unsupported. (It failed before: the refresh was
// granted and stored over the Delete.)
func TestReviewShardedDeleteRacesFinishRefresh(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": s.Options().Addr}})
		t.Cleanup(func() { _ = ring.Close() })
		hook := &betweenPipelined{key: "ns:k"}
		ring.AddHook(hook)
		st := newStore(t, ring, remote.Options{})
		ctx := context.Background()
		set(t, st, "k", "old", 5*time.Second)
		r := begin(t, st, "k")
		if r.State == remote.RefreshUnsupported {
			return // refreshes are not offered on a Ring: nothing can race
		}
		if r.State != remote.RefreshGranted {
			t.Fatalf("%v, want unsupported (or granted, and then safe)", r.State)
		}
		data, _ := st.Encode("k", "loaded before the delete", time.Minute)
		var stored bool
		hook.mu.Lock()
		hook.between = func() {
			var err error
			stored, err = st.FinishRefresh(ctx, "k", r, data, time.Minute)
			if err != nil {
				t.Errorf("FinishRefresh: %v", err)
			}
		}
		hook.mu.Unlock()
		if err := st.Write(ctx, nil, []string{"k"}, "", nil); err != nil {
			t.Fatal(err)
		}
		hook.mu.Lock()
		ran := hook.between == nil
		hook.mu.Unlock()
		if !ran {
			t.Fatal("the Delete's pipeline was not seen by the hook")
		}
		if v := value(t, st, "k"); v != "" || stored {
			t.Errorf("after the Delete returned L2 holds %q (FinishRefresh stored: %v); want nothing", v, stored)
		}
	})
}

// TestReviewRefreshLockIsNotAnotherKey: the refresh lock of key "{t}k" is
// "ns:{t}k\x00refresh", which is also the Redis key of the user key
// "{t}k\x00refresh" (CheckKey allows NUL). A write of one key must not
// delete another key's value, and a refresh must not be blocked by, nor
// store its token into, another key.
func TestReviewRefreshLockIsNotAnotherKey(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		other := "{t}k\x00refresh"
		if err := st.CheckKey(other); err != nil {
			t.Skipf("CheckKey refuses %q: %v", other, err)
		}
		set(t, st, other, "other value", time.Hour)
		set(t, st, "{t}k", "old", 5*time.Second)
		if v := value(t, st, other); v != "other value" {
			t.Errorf("writing {t}k changed the value of %q to %q", other, v)
		}
		set(t, st, other, "other value", time.Hour)
		if r := begin(t, st, "{t}k"); r.State != remote.RefreshGranted {
			t.Errorf("refresh of {t}k: %v, want granted (an unrelated key holds its lock name)", r.State)
		}
		set(t, st, "{t}k", "old", 5*time.Second)
		if err := s.Client(t).Del(context.Background(), "ns:"+other).Err(); err != nil {
			t.Fatal(err)
		}
		if r := begin(t, st, "{t}k"); r.State == remote.RefreshGranted {
			if _, ok, err := st.Get(context.Background(), other); ok || err != nil {
				t.Errorf("a refresh of {t}k stored its token as the value of %q: Get = %v, %v", other, ok, err)
			}
		}
	})
}

// TestReviewWriteHugeTTL: the largest TTL a time.Duration holds is
// positive, so it must be written and read back (or be refused as bad
// input before anything is sent), not fail in Redis.
func TestReviewWriteHugeTTL(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ttl := time.Duration(math.MaxInt64)
		data, err := st.Encode("k", "v", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Write(context.Background(), []remote.SetOp{{Key: "k", Data: data, TTL: ttl}}, nil, "", nil); err != nil {
			t.Fatalf("Write with TTL MaxInt64: %v", err)
		}
		if v := value(t, st, "k"); v != "v" {
			t.Errorf("L2 holds %q, want v", v)
		}
	})
}

// TestReviewFinishRefreshAfterReLease: a refresh began, the key expired,
// and a load took a lease on it. The refresh must not store over the
// lease, and the lease's fill must still succeed.
func TestReviewFinishRefreshAfterReLease(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		set(t, st, "k", "old", 5*time.Second)
		r := begin(t, st, "k")
		if r.State != remote.RefreshGranted {
			t.Fatalf("%v, want granted", r.State)
		}
		if err := s.Client(t).Del(ctx, "ns:k").Err(); err != nil { // as its TTL would
			t.Fatal(err)
		}
		l, err := st.GetOrLease(ctx, "k", 5*time.Second)
		if err != nil || l.State != remote.LeaseGranted {
			t.Fatalf("GetOrLease = %v, %v; want granted", l.State, err)
		}
		data, _ := st.Encode("k", "refreshed", time.Minute)
		if ok, err := st.FinishRefresh(ctx, "k", r, data, time.Minute); err != nil || ok {
			t.Errorf("FinishRefresh over a lease = %v, %v; want refused", ok, err)
		}
		fill, _ := st.Encode("k", "loaded", time.Minute)
		if ok, err := st.Fill(ctx, "k", l.Token, fill, time.Minute); err != nil || !ok {
			t.Errorf("the lease's Fill = %v, %v; want stored", ok, err)
		}
		if v := value(t, st, "k"); v != "loaded" {
			t.Errorf("L2 holds %q, want loaded", v)
		}
	})
}

// TestReviewWriteOddBracesOnCluster: keys whose braces make no hash tag
// (they have no refresh lock) and keys with tags are written and deleted
// together on Cluster, in one call, without a CROSSSLOT error.
func TestReviewWriteOddBracesOnCluster(t *testing.T) {
	cc := startCluster(t, 3)
	st := newStore(t, cc, remote.Options{})
	ctx := context.Background()
	keys := []string{"a{b", "}x{", "{}k", "x{y}z", "plain", "{y}w", "a}b{", "{{z}}"}
	var sets []remote.SetOp
	for _, k := range keys {
		data, err := st.Encode(k, "v:"+k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, remote.SetOp{Key: k, Data: data, TTL: time.Minute})
	}
	if err := st.Write(ctx, sets, nil, "", nil); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, k := range keys {
		if v := value(t, st, k); v != "v:"+k {
			t.Errorf("%q holds %q", k, v)
		}
		it, _, _ := st.Get(ctx, k)
		r, err := st.BeginRefresh(ctx, k, max(it.Expiry(), 1), time.Second)
		if err != nil && strings.Contains(err.Error(), "CROSSSLOT") {
			t.Errorf("BeginRefresh(%q): %v", k, err)
		}
		_ = r
	}
	if err := st.Write(ctx, nil, keys, "", nil); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, k := range keys {
		if v := value(t, st, k); v != "" {
			t.Errorf("%q holds %q after the delete", k, v)
		}
	}
}
