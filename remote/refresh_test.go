package remote_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// begin runs BeginRefresh of key as a caller holding its current value
// (or, when L2 has none, one with expiry 1), and fails on error.
func begin(t *testing.T, st *remote.Store, key string) remote.Refresh {
	t.Helper()
	expiry := uint64(1)
	if it, ok, err := st.Get(context.Background(), key); err == nil && ok {
		expiry = it.Expiry()
	}
	return beginAt(t, st, key, expiry)
}

// beginAt runs BeginRefresh of key as a caller holding a value with expiry.
func beginAt(t *testing.T, st *remote.Store, key string, expiry uint64) remote.Refresh {
	t.Helper()
	r, err := st.BeginRefresh(context.Background(), key, expiry, 5*time.Second)
	if err != nil {
		t.Fatalf("BeginRefresh(%q): %v", key, err)
	}
	return r
}

// value decodes key's L2 value, or "" when it has none.
func value(t *testing.T, st *remote.Store, key string) string {
	t.Helper()
	it, ok, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	var v string
	if err := st.Decode(it, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRefreshOnce: a key whose value the caller still holds is granted to
// one caller; the others see it held; the fill installs the new value,
// after which a caller holding the old value is told it is done, and
// given the new. A caller holding another value than L2's is done at once;
// a missing key has nothing to refresh.
func TestRefreshOnce(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		if r := begin(t, st, "missing"); r.State != remote.RefreshGone {
			t.Errorf("missing key: %v, want gone", r.State)
		}
		set(t, st, "far", "v", time.Hour)
		if r := beginAt(t, st, "far", 12345); r.State != remote.RefreshDone {
			t.Errorf("caller holding another value: %v, want done", r.State)
		}
		set(t, st, "k", "old", 5*time.Second)
		r := begin(t, st, "k")
		if r.State != remote.RefreshGranted {
			t.Fatalf("key within its window: %v, want granted", r.State)
		}
		var from string
		if err := st.Decode(r.Item, &from); err != nil || from != "old" {
			t.Errorf("granted refresh began from %q, %v; want old", from, err)
		}
		if r2 := begin(t, st, "k"); r2.State != remote.RefreshHeld {
			t.Errorf("second caller: %v, want held", r2.State)
		}
		data, _ := st.Encode("k", "new", time.Minute)
		ok, err := st.FinishRefresh(ctx, "k", r, data, time.Minute)
		if err != nil || !ok {
			t.Fatalf("FinishRefresh = %v, %v; want stored", ok, err)
		}
		if v := value(t, st, "k"); v != "new" {
			t.Errorf("after the refresh L2 holds %q, want new", v)
		}
		r3 := beginAt(t, st, "k", r.Item.Expiry())
		var now string
		if r3.State != remote.RefreshDone || st.Decode(r3.Item, &now) != nil || now != "new" {
			t.Errorf("caller holding the old value after the refresh: %v %q, want done with new", r3.State, now)
		}
		if ok, _ := st.FinishRefresh(ctx, "k", r, data, time.Minute); ok {
			t.Error("a refresh finished twice stored twice")
		}
	})
}

// TestRefreshLosesToWrites: a Set or a Delete between the start of a
// refresh and its fill makes the fill store nothing, even when the Set
// writes bytes identical to those the refresh began from. A key that only
// expired meanwhile is stored again.
func TestRefreshLosesToWrites(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		for _, tc := range []struct {
			name  string
			write func(t *testing.T, data []byte)
			want  string
		}{
			{"set", func(t *testing.T, _ []byte) { set(t, st, "k", "newer", time.Minute) }, "newer"},
			{"same bytes", func(t *testing.T, data []byte) {
				if err := st.Write(ctx, []remote.SetOp{{Key: "k", Data: data, TTL: 5 * time.Second}}, nil, "", nil); err != nil {
					t.Fatal(err)
				}
			}, "old"},
			{"delete", func(t *testing.T, _ []byte) {
				if err := st.Write(ctx, nil, []string{"k"}, "", nil); err != nil {
					t.Fatal(err)
				}
			}, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				old, _ := st.Encode("k", "old", 5*time.Second)
				if err := st.Write(ctx, []remote.SetOp{{Key: "k", Data: old, TTL: 5 * time.Second}}, nil, "", nil); err != nil {
					t.Fatal(err)
				}
				r := begin(t, st, "k")
				if r.State != remote.RefreshGranted {
					t.Fatalf("%v, want granted", r.State)
				}
				tc.write(t, old)
				data, _ := st.Encode("k", "loaded before the write", time.Minute)
				if ok, err := st.FinishRefresh(ctx, "k", r, data, time.Minute); err != nil || ok {
					t.Errorf("FinishRefresh after a write = %v, %v; want refused", ok, err)
				}
				if v := value(t, st, "k"); v != tc.want {
					t.Errorf("L2 holds %q, want %q", v, tc.want)
				}
			})
		}
		t.Run("expired", func(t *testing.T) {
			set(t, st, "e", "old", 5*time.Second)
			r := begin(t, st, "e")
			if r.State != remote.RefreshGranted {
				t.Fatalf("%v, want granted", r.State)
			}
			if err := s.Client(t).Del(ctx, "ns:e").Err(); err != nil { // as its TTL would
				t.Fatal(err)
			}
			data, _ := st.Encode("e", "refreshed", time.Minute)
			if ok, err := st.FinishRefresh(ctx, "e", r, data, time.Minute); err != nil || !ok {
				t.Errorf("FinishRefresh of a key that expired = %v, %v; want stored", ok, err)
			}
		})
	})
}

// TestRefreshLockSlot: the lock of every key that can have one lives in
// the key's Cluster slot; keys whose braces make no hash tag have none.
func TestRefreshLockSlot(t *testing.T) {
	for _, k := range []string{"ns:plain", "ns:{user1}:cart", "ns:a{b", "ns:a{}b", "ns:a}b", "ns:{}x{y}"} {
		lock, ok := remote.RefreshLockKey(k)
		if ok && remote.HashSlot(lock) != remote.HashSlot(k) {
			t.Errorf("lock %q of %q is in slot %d, key in %d", lock, k, remote.HashSlot(lock), remote.HashSlot(k))
		}
		if ok && !strings.HasPrefix(lock, "ns:\x00") {
			t.Errorf("lock %q of %q must be in the namespace's reserved part, \"ns:\\x00\"", lock, k)
		}
		if !ok && (k == "ns:plain" || k == "ns:{user1}:cart") {
			t.Errorf("%q has no refresh lock", k)
		}
	}
}

// TestRefreshOnCluster: the scripts touch a key and its lock in one slot,
// which Cluster requires.
func TestRefreshOnCluster(t *testing.T) {
	cc := startCluster(t, 3)
	st := newStore(t, cc, remote.Options{})
	ctx := context.Background()
	for _, key := range []string{"a", "b", "{tag}c", "d"} {
		set(t, st, key, "old", 5*time.Second)
		r := begin(t, st, key)
		if r.State != remote.RefreshGranted {
			t.Fatalf("%s: %v, want granted", key, r.State)
		}
		data, _ := st.Encode(key, "new", time.Minute)
		if ok, err := st.FinishRefresh(ctx, key, r, data, time.Minute); err != nil || !ok {
			t.Fatalf("%s: FinishRefresh = %v, %v", key, ok, err)
		}
		if again := beginAt(t, st, key, r.Item.Expiry()); again.State != remote.RefreshDone {
			t.Fatalf("%s: refreshed key: %v, want done", key, again.State)
		}
		set(t, st, key, "written", 5*time.Second)
		r = begin(t, st, key)
		if r.State != remote.RefreshGranted {
			t.Fatalf("%s after a write: %v, want granted", key, r.State)
		}
		set(t, st, key, "written again", 5*time.Second)
		if ok, _ := st.FinishRefresh(ctx, key, r, data, time.Minute); ok {
			t.Errorf("%s: a refresh stored over a Cluster write", key)
		}
	}
}

// proxiedStore returns a Store whose client reaches s through a fault
// proxy and retries a failed command maxRetries times (-1: never), and a
// Store on a direct client.
func proxiedStore(t *testing.T, s *redistest.Server, maxRetries int) (st, direct *remote.Store, p *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ro := s.Options()
	ro.Addr = p.Addr()
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = maxRetries
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	return newStore(t, rdb, remote.Options{}), newStore(t, s.Client(t), remote.Options{}), p
}

// setForRefresh writes key through st and runs both refresh scripts on
// it once, so that a lost reply afterwards is a script's own, not a
// NOSCRIPT. It returns the expiry of key's value.
func setForRefresh(t *testing.T, st *remote.Store, key string) uint64 {
	t.Helper()
	ctx := context.Background()
	set(t, st, key, "old", 5*time.Second)
	it, ok, err := st.Get(ctx, key)
	if err != nil || !ok {
		t.Fatalf("Get(%q) = %v, %v", key, ok, err)
	}
	if _, err := st.FinishRefresh(ctx, key, beginAt(t, st, key, it.Expiry()), nil, 0); err != nil {
		t.Fatal(err)
	}
	return it.Expiry()
}

// TestAbandonRefreshAfterLostReply: a BeginRefresh whose reply is lost
// (the connection is reset after the script ran, and the client does not
// retry) returns an error, though its script took the lock. The Refresh
// it returns carries the token, so AbandonRefresh frees the lock, and
// another caller is granted the refresh at once instead of finding it
// held for lockTTL. A Refresh that can hold no lock costs no round trip.
func TestAbandonRefreshAfterLostReply(t *testing.T) {
	st, other, p := proxiedStore(t, redistest.Real(t), -1)
	ctx := context.Background()
	expiry := setForRefresh(t, st, "k")
	p.DropNextReply()
	r, err := st.BeginRefresh(ctx, "k", expiry, time.Minute)
	if err == nil {
		t.Fatalf("BeginRefresh with its reply dropped = %v, nil; want an error", r.State)
	}
	if r2 := beginAt(t, other, "k", expiry); r2.State != remote.RefreshHeld {
		t.Fatalf("another caller after the lost reply: %v, want held (the script ran)", r2.State)
	}
	if err := st.AbandonRefresh(ctx, "k", r); err != nil {
		t.Fatalf("AbandonRefresh: %v", err)
	}
	if r3 := beginAt(t, other, "k", expiry); r3.State != remote.RefreshGranted {
		t.Errorf("another caller after AbandonRefresh: %v, want granted", r3.State)
	}
	trips := st.Stats().RoundTrips
	if err := st.AbandonRefresh(ctx, "k", remote.Refresh{State: remote.RefreshHeld}); err != nil {
		t.Errorf("AbandonRefresh of a held refresh: %v, want nil", err)
	}
	if n := st.Stats().RoundTrips - trips; n != 0 {
		t.Errorf("AbandonRefresh of a refresh holding no lock took %d round trips, want 0", n)
	}
}

// TestBeginRefreshRetryFindsOwnLock: a BeginRefresh whose reply is lost
// and that go-redis sends again (as it does by default) finds the lock its
// first run took. That lock is the caller's: the refresh is granted, not
// held by another caller, which would leave the key unrefreshed, by this
// caller or any other, until the lock expired.
func TestBeginRefreshRetryFindsOwnLock(t *testing.T) {
	st, other, p := proxiedStore(t, redistest.Real(t), 1)
	ctx := context.Background()
	expiry := setForRefresh(t, st, "k")
	accepted := p.Accepted()
	p.DropNextReply()
	r, err := st.BeginRefresh(ctx, "k", expiry, time.Minute)
	if err != nil || r.State != remote.RefreshGranted {
		t.Fatalf("BeginRefresh sent again after its reply was lost = %v, %v; want granted", r.State, err)
	}
	if p.Accepted() == accepted {
		t.Fatal("no new connection: the reply was not dropped")
	}
	data, _ := st.Encode("k", "new", time.Minute)
	if stored, err := st.FinishRefresh(ctx, "k", r, data, time.Minute); err != nil || !stored {
		t.Errorf("FinishRefresh = %v, %v; want stored", stored, err)
	}
	if v := value(t, other, "k"); v != "new" {
		t.Errorf("L2 holds %q after the refresh, want new", v)
	}
}
