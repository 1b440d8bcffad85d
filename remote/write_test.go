package remote_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

func TestWrite(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		rdb := s.Client(t)
		st := newStore(t, rdb, remote.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		set(t, st, "old1", 1, 0)
		set(t, st, "old2", 2, 0)

		sub := s.Client(t).Subscribe(ctx, "inval")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
			t.Fatalf("Subscribe: %v", err)
		}
		a, _ := st.Encode("a", "A", time.Minute)
		hook := &countHook{}
		rdb.AddHook(hook)
		rdb.Ping(ctx) // dials now if it must; dialling runs HELLO through the hook
		hook.n.Store(0)
		err := st.Write(ctx, []remote.SetOp{{Key: "a", Data: a, TTL: time.Minute}, {Key: "b", Data: st.EncodeNegative(time.Minute), TTL: time.Minute}},
			[]string{"old1", "old2"}, "inval", []byte("a b old1 old2"))
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		if got := hook.n.Load(); got != 1 {
			t.Errorf("Write sent %d commands or pipelines, want 1", got)
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil || msg.Payload != "a b old1 old2" {
			t.Errorf("subscriber got %v, %v; want the message", msg, err)
		}
		_, ok, _ := st.GetMany(ctx, []string{"a", "b", "old1", "old2"})
		if fmt.Sprint(ok) != "[true true false false]" {
			t.Errorf("after Write, present = %v, want [true true false false]", ok)
		}
		if ttl := rdb.PTTL(ctx, "ns:a").Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("PTTL(ns:a) = %v, want about 1m", ttl)
		}
		if err := st.Write(ctx, nil, nil, "", []byte("x")); err == nil {
			t.Errorf("Write(msg without channel) = nil, want an error")
		}
	})
}

func TestWriteFailsWhenRedisIsGone(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		rdb := s.Client(t)
		st := newStore(t, rdb, remote.Options{})
		data, _ := st.Encode("k", 1, time.Minute)
		_ = rdb.Close()
		err := st.Write(context.Background(), []remote.SetOp{{Key: "k", Data: data, TTL: time.Minute}}, []string{"x"}, "inval", []byte("k"))
		if err == nil || !strings.HasPrefix(err.Error(), "remote write") {
			t.Errorf("Write(closed client) = %v, want a remote write error", err)
		}
		if _, _, err := st.Get(context.Background(), "k"); err == nil {
			t.Errorf("Get(closed client) = nil error, want one")
		}
		if st := st.Stats(); st.Errors != 2 {
			t.Errorf("Stats().Errors = %d, want 2", st.Errors)
		}
	})
}

func TestTimeoutIsCounted(t *testing.T) {
	s := redistest.Real(t)
	o := s.Options()
	o.ContextTimeoutEnabled = true
	rdb := redis.NewClient(o)
	defer rdb.Close()
	st := newStore(t, rdb, remote.Options{Timeout: 50 * time.Millisecond})
	set(t, st, "k", 1, 0) // dial before the pause
	s.Pause(t)
	_, _, err := st.Get(context.Background(), "k")
	s.Resume(t)
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
		t.Errorf("Get(paused server) = %v, want a timeout", err)
	}
	if got := st.Stats(); got.Timeouts != 1 || got.Errors != 1 {
		t.Errorf("Stats() = %+v, want 1 timeout, 1 error", got)
	}
	if lat := st.Latency()["get"]; lat.Count != 1 {
		t.Errorf("Latency()[get].Count = %d, want 1", lat.Count)
	}
}

func TestConcurrentUse(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 25 {
					key := fmt.Sprint("k", (g+i)%5)
					data, _ := st.Encode(key, i, time.Minute)
					if err := st.Write(ctx, []remote.SetOp{{Key: key, Data: data, TTL: time.Minute}}, nil, "c", []byte(key)); err != nil {
						t.Error(err)
						return
					}
					if it, ok, err := st.Get(ctx, key); err == nil && ok {
						var v int
						if err := st.Decode(it, &v); err != nil {
							t.Error(err)
						}
					}
					l, err := st.GetOrLease(ctx, fmt.Sprint("lease", (g+i)%3), time.Second)
					if err == nil && l.State == remote.LeaseGranted {
						_ = st.Release(ctx, fmt.Sprint("lease", (g+i)%3), l.Token)
					}
					_ = st.Stats()
				}
			})
		}
		wg.Wait()
		if got := st.Stats(); got.Errors != 0 || got.DecodeErrors != 0 {
			t.Errorf("Stats() = %+v, want no errors", got)
		}
	})
}
