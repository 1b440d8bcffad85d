package remote_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

const leaseTTL = 10 * time.Second

// grant takes the lease on key or fails the test.
func grant(t *testing.T, st *remote.Store, key string) []byte {
	t.Helper()
	l, err := st.GetOrLease(context.Background(), key, leaseTTL)
	if err != nil || l.State != remote.LeaseGranted || len(l.Token) != 16 {
		t.Fatalf("GetOrLease(%q) = %v, %d-byte token, %v; want granted, 16 bytes", key, l.State, len(l.Token), err)
	}
	return l.Token
}

// state returns the lease state a new GetOrLease of key sees.
func state(t *testing.T, st *remote.Store, key string) remote.LeaseState {
	t.Helper()
	l, err := st.GetOrLease(context.Background(), key, leaseTTL)
	if err != nil {
		t.Fatalf("GetOrLease(%q): %v", key, err)
	}
	return l.State
}

func TestLeaseGrantedThenHeld(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		other := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		grant(t, st, "k")
		l, err := other.GetOrLease(ctx, "k", leaseTTL)
		if err != nil || l.State != remote.LeaseHeld || l.Token != nil {
			t.Errorf("second GetOrLease() = %+v, %v; want held without token", l, err)
		}
		if _, ok, err := st.Get(ctx, "k"); ok || err != nil {
			t.Errorf("Get(leased key) = %v, %v; want a miss", ok, err)
		}
		if st.Stats().LeasesGranted != 1 || other.Stats().LeasesHeld != 1 {
			t.Errorf("LeasesGranted = %d, LeasesHeld = %d; want 1, 1", st.Stats().LeasesGranted, other.Stats().LeasesHeld)
		}
		if _, err := st.GetOrLease(ctx, "k", 0); err == nil {
			t.Errorf("GetOrLease(leaseTTL 0) = nil error, want one")
		}
	})
}

func TestFillInstalls(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		token := grant(t, st, "k")
		data, _ := st.Encode("k", "loaded", time.Minute)
		if ok, err := st.Fill(ctx, "k", token, data, time.Minute); !ok || err != nil {
			t.Fatalf("Fill() = %v, %v; want true", ok, err)
		}
		l, err := st.GetOrLease(ctx, "k", leaseTTL)
		var got string
		if err != nil || l.State != remote.LeaseHit || st.Decode(l.Item, &got) != nil || got != "loaded" {
			t.Errorf("GetOrLease() after Fill = %v %q, %v; want hit %q", l.State, got, err, "loaded")
		}
		if l.Item.TTL <= 0 || l.Item.TTL > time.Minute {
			t.Errorf("Item.TTL = %v, want about 1m", l.Item.TTL)
		}
		if ttl := s.Client(t).PTTL(ctx, "ns:k").Val(); ttl <= leaseTTL || ttl > time.Minute {
			t.Errorf("PTTL after Fill = %v, want the fill's 1m", ttl)
		}
		// The lease is spent: a second fill with the same token is refused.
		if ok, err := st.Fill(ctx, "k", token, data, time.Minute); ok || err != nil {
			t.Errorf("second Fill() = %v, %v; want false", ok, err)
		}
	})
}

// TestFillRefusedAfterWrite is the stale-set race: a write or delete that
// lands between the grant and the fill must win.
func TestFillRefusedAfterWrite(t *testing.T) {
	tests := []struct {
		name      string
		give      func(t *testing.T, st *remote.Store, token []byte)
		wantFound bool
	}{
		{"set", func(t *testing.T, st *remote.Store, _ []byte) { set(t, st, "k", "fresh", time.Minute) }, true},
		{"delete", func(t *testing.T, st *remote.Store, _ []byte) {
			if err := st.Write(context.Background(), nil, []string{"k"}, "", nil); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"released", func(t *testing.T, st *remote.Store, token []byte) {
			if err := st.Release(context.Background(), "k", token); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"leased again", func(t *testing.T, st *remote.Store, token []byte) {
			_ = st.Release(context.Background(), "k", token)
			grant(t, st, "k")
		}, false},
	}
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st := newStore(t, s.Client(t), remote.Options{Namespace: "race" + fmt.Sprint(len(tt.name))})
				ctx := context.Background()
				token := grant(t, st, "k")
				tt.give(t, st, token)
				stale, _ := st.Encode("k", "stale", time.Minute)
				if ok, err := st.Fill(ctx, "k", token, stale, time.Minute); ok || err != nil {
					t.Errorf("Fill() = %v, %v; want false", ok, err)
				}
				if got := st.Stats().FillsRefused; got != 1 {
					t.Errorf("FillsRefused = %d, want 1", got)
				}
				it, found, _ := st.Get(ctx, "k")
				var got string
				_ = st.Decode(it, &got)
				if found != tt.wantFound || got == "stale" {
					t.Errorf("Get() after refused Fill = %q, %v; want found %v and never the stale value", got, found, tt.wantFound)
				}
			})
		}
	})
}

func TestReleaseOnlyOwnLease(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		token := grant(t, st, "k")
		if err := st.Release(ctx, "k", []byte("0123456789abcdef")); err != nil {
			t.Fatalf("Release(wrong token): %v", err)
		}
		if got := state(t, st, "k"); got != remote.LeaseHeld {
			t.Fatalf("after Release(wrong token), state = %v, want held", got)
		}
		if err := st.Release(ctx, "k", token); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if got := state(t, st, "k"); got != remote.LeaseGranted {
			t.Errorf("after Release, state = %v, want granted", got)
		}
		// Release never deletes a value.
		set(t, st, "v", 1, time.Minute)
		if err := st.Release(ctx, "v", token); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := st.Get(ctx, "v"); !ok {
			t.Errorf("Release deleted a value")
		}
	})
}

func TestLeaseExpires(t *testing.T) {
	const short = 50 * time.Millisecond
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		if l, err := st.GetOrLease(ctx, "k", short); err != nil || l.State != remote.LeaseGranted {
			t.Fatalf("GetOrLease() = %v, %v", l.State, err)
		}
		if ttl := s.Client(t).PTTL(ctx, "ns:k").Val(); ttl <= 0 || ttl > short {
			t.Errorf("PTTL(lease) = %v, want in (0, %v]", ttl, short)
		}
		if m := s.Mini(); m != nil {
			m.FastForward(short)
		}
		// Redis expires the lease on its own clock and tells nobody, so poll
		// with a deadline.
		deadline := time.Now().Add(5 * time.Second)
		for state(t, st, "k") != remote.LeaseGranted {
			if time.Now().After(deadline) {
				t.Fatalf("lease of %v still held after 5s", short)
			}
			time.Sleep(5 * time.Millisecond) // poll interval
		}
	})
}

func TestGetOrLeaseMany(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		rdb := s.Client(t)
		st := newStore(t, rdb, remote.Options{})
		ctx := context.Background()
		set(t, st, "hit", "H", time.Minute)
		if err := st.Write(ctx, []remote.SetOp{{Key: "neg", Data: st.EncodeNegative(time.Minute), TTL: time.Minute}}, nil, "", nil); err != nil {
			t.Fatal(err)
		}
		grant(t, st, "held")
		rdb.Set(ctx, "ns:bad", "garbage", 0)

		keys := []string{"hit", "new1", "held", "neg", "bad", "new2"}
		hook := &countHook{}
		rdb.AddHook(hook)
		rdb.Ping(ctx) // dials now if it must; dialling runs HELLO through the hook
		// Pipelines may take a connection of their own: dial that one now too.
		_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil })
		hook.n.Store(0)
		leases, err := st.GetOrLeaseMany(ctx, keys, leaseTTL)
		var de *remote.DecodeError
		if !errors.As(err, &de) || de.Key != "bad" {
			t.Errorf("GetOrLeaseMany() error = %v, want *DecodeError for bad", err)
		}
		got := make([]remote.LeaseState, len(leases))
		for i, l := range leases {
			got[i] = l.State
		}
		want := []remote.LeaseState{remote.LeaseHit, remote.LeaseGranted, remote.LeaseHeld, remote.LeaseHit, 0, remote.LeaseGranted}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("GetOrLeaseMany(%q) = %v, want %v", keys, got, want)
		}
		if leases[3].Item.Kind != remote.KindNegative || leases[0].Item.Kind != remote.KindValue {
			t.Errorf("items: %v, %v; want value, negative", leases[0].Item.Kind, leases[3].Item.Kind)
		}
		if n := hook.n.Load(); n != 1 {
			t.Errorf("GetOrLeaseMany sent %d commands or pipelines, want 1", n)
		}

		// Fill both new leases after a write kills one of them.
		set(t, st, "new2", "written", time.Minute)
		a, _ := st.Encode("new1", "filled", time.Minute)
		b, _ := st.Encode("new2", "stale", time.Minute)
		installed, err := st.FillMany(ctx, []remote.FillOp{
			{Key: "new1", Token: leases[1].Token, Data: a, TTL: time.Minute},
			{Key: "new2", Token: leases[5].Token, Data: b, TTL: time.Minute},
		})
		if err != nil || fmt.Sprint(installed) != "[true false]" {
			t.Errorf("FillMany() = %v, %v; want [true false]", installed, err)
		}
	})
}

func TestScriptsSurviveFlushAndRestart(t *testing.T) {
	for _, scripted := range []bool{false, true} {
		t.Run(fmt.Sprintf("scriptLease=%v", scripted), func(t *testing.T) {
			testScriptsSurvive(t, scripted)
		})
	}
}

// testScriptsSurvive runs lease cycles that each start with the server's
// script cache empty, so the first EVALSHA of a script gets NOSCRIPT and
// costs a second round trip with EVAL. With scripted, leases go through the
// Lua script as on servers older than Redis 7.0; otherwise through SET NX
// PX GET, which needs no script.
func testScriptsSurvive(t *testing.T, scripted bool) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		rdb := s.Client(t)
		st := newStore(t, rdb, remote.Options{})
		if scripted {
			remote.UseScriptLease(st)
		}
		ctx := context.Background()
		roundTrips := func(f func()) uint64 {
			before := st.Stats().RoundTrips
			f()
			return st.Stats().RoundTrips - before
		}
		cycle := func(key string) {
			t.Helper()
			var token []byte
			wantGrant := map[bool]uint64{false: 1, true: 2}[scripted]
			if n := roundTrips(func() { token = grant(t, st, key) }); n != wantGrant {
				t.Errorf("first GetOrLease took %d round trips, want %d", n, wantGrant)
			}
			data, _ := st.Encode(key, key, time.Minute)
			var ok bool
			var err error
			n := roundTrips(func() { ok, err = st.Fill(ctx, key, token, data, time.Minute) })
			if !ok || err != nil {
				t.Fatalf("Fill(%q) = %v, %v; want true", key, ok, err)
			}
			// miniredis keeps its scripts across Restart; a real server
			// starts with none.
			if n != 2 && (s.Real || key != "c") {
				t.Errorf("Fill(%q) took %d round trips, want 2 (EVALSHA, EVAL)", key, n)
			}
			token = grant(t, st, key+"-r")
			if err := st.Release(ctx, key+"-r", token); err != nil {
				t.Fatalf("Release(%q): %v", key+"-r", err)
			}
			leases, err := st.GetOrLeaseMany(ctx, []string{key + "-m1", key + "-m2"}, leaseTTL)
			if err != nil || leases[0].State != remote.LeaseGranted || leases[1].State != remote.LeaseGranted {
				t.Fatalf("GetOrLeaseMany() = %+v, %v", leases, err)
			}
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatalf("SCRIPT FLUSH: %v", err)
			}
			var installed []bool
			var err2 error
			n = roundTrips(func() {
				installed, err2 = st.FillMany(ctx, []remote.FillOp{
					{Key: key + "-m1", Token: leases[0].Token, Data: data, TTL: time.Minute},
					{Key: key + "-m2", Token: leases[1].Token, Data: data, TTL: time.Minute},
				})
			})
			if n != 2 {
				t.Errorf("FillMany after SCRIPT FLUSH took %d round trips, want 2", n)
			}
			if err := err2; err != nil || fmt.Sprint(installed) != "[true true]" {
				t.Fatalf("FillMany() after SCRIPT FLUSH = %v, %v", installed, err)
			}
		}
		cycle("a")
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		cycle("b")
		s.Restart(t)
		cycle("c")
		if n := st.Stats().Errors; n != 0 {
			t.Errorf("Stats().Errors = %d, want 0 (NOSCRIPT is not an error)", n)
		}
	})
}

func TestReleaseMany(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		rdb := s.Client(t)
		st := newStore(t, rdb, remote.Options{})
		ctx := context.Background()
		leases, err := st.GetOrLeaseMany(ctx, []string{"r1", "r2", "r3"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		// r3's lease is replaced by another holder's: ReleaseMany must leave it.
		if err := rdb.Del(ctx, "ns:r3").Err(); err != nil {
			t.Fatal(err)
		}
		grant(t, st, "r3")
		err = st.ReleaseMany(ctx, []string{"r1", "r2", "r3"}, [][]byte{leases[0].Token, leases[1].Token, leases[2].Token})
		if err != nil {
			t.Fatalf("ReleaseMany: %v", err)
		}
		if n := rdb.Exists(ctx, "ns:r1", "ns:r2").Val(); n != 0 {
			t.Errorf("after ReleaseMany, %d of our leases remain", n)
		}
		if n := rdb.Exists(ctx, "ns:r3").Val(); n != 1 {
			t.Errorf("ReleaseMany removed another holder's lease")
		}
		if err := st.ReleaseMany(ctx, []string{"a"}, nil); err == nil {
			t.Errorf("ReleaseMany with mismatched tokens = nil, want an error")
		}
	})
}
