package remote

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// fenceFailHook fails every command with a refused-dial error while fail is
// set, before anything is sent.
type fenceFailHook struct{ fail *atomic.Bool }

var errFenceRefused = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}

func (h fenceFailHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h fenceFailHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.fail.Load() {
			cmd.SetErr(errFenceRefused)
			return errFenceRefused
		}
		return next(ctx, cmd)
	}
}
func (h fenceFailHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func reviewFenceSet(t *testing.T, st *Store, key, val string) SetOp {
	t.Helper()
	data, err := st.Encode(key, val, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return SetOp{Key: key, Data: data, TTL: time.Minute}
}

// spoilFenceHook stores another token in the fence key before every
// script the client sends, as a raise of another Store sharing the fence,
// landing each time just before the write, would.
type spoilFenceHook struct {
	admin *redis.Client
	key   *string
}

func (h spoilFenceHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h spoilFenceHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); (n == "evalsha" || n == "eval") && *h.key != "" {
			if err := h.admin.Set(ctx, *h.key, "another token", time.Hour).Err(); err != nil {
				return err
			}
		}
		return next(ctx, cmd)
	}
}
func (h spoilFenceHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestReviewFenceFencedWriteCountsAsOutage: a write refused by the fence
// was answered by Redis, so it must not count as an outage: writes refused
// again and again (each comes back ErrFenced after its attempts) must not
// open the breaker, or a healthy Redis would be skipped for BreakerMinOpen.
func TestReviewFenceFencedWriteCountsAsOutage(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		rdb := s.Client(t)
		key := ""
		rdb.AddHook(spoilFenceHook{admin: s.Client(t), key: &key})
		st, err := New(Options{Redis: rdb, Namespace: "rvf", BreakerThreshold: 2, BreakerMinOpen: time.Minute, BreakerMaxOpen: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		key = FenceKey(st)
		ctx := context.Background()
		for i := range 2 {
			err := st.Write(ctx, []SetOp{reviewFenceSet(t, st, "k", "v")}, nil, "ch", []byte("m"))
			if !errors.Is(err, ErrFenced) {
				t.Fatalf("write %d = %v; want ErrFenced", i, err)
			}
		}
		if st.Unavailable() {
			t.Errorf("breaker open after 2 writes refused by the fence (Redis answered both): every call now fails with ErrUnavailable; stats %+v", st.Stats())
		}
		if got := st.Stats().FenceRefusals; got != 2*fenceAttempts {
			t.Errorf("FenceRefusals = %d, want %d", got, 2*fenceAttempts)
		}
	})
}

// TestReviewFenceRaiseRefusedWhileProbing: after an outage in which a write
// failed (fence pending) and the breaker opened, the first write after the
// open window is the breaker's probe (Write's begin). raiseIfPending then
// calls begin again, which the probing breaker refuses: ErrUnavailable,
// recorded by Write's end as an outage, so the probe "fails" without
// touching Redis and the breaker reopens with a doubled window. With only
// writes (e.g. a tiered cache whose reads hit L1), the Store never heals.
func TestReviewFenceRaiseRefusedWhileProbing(t *testing.T) {
	s := redistest.Mini(t)
	var fail atomic.Bool
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	rdb.AddHook(fenceFailHook{fail: &fail})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := New(Options{Redis: rdb, Namespace: "rvf", BreakerThreshold: 1,
		BreakerMinOpen: 5 * time.Millisecond, BreakerMaxOpen: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fail.Store(true)
	if err := st.Write(ctx, []SetOp{reviewFenceSet(t, st, "k", "v0")}, nil, "ch", []byte("m")); err == nil {
		t.Fatal("write through a failing client succeeded")
	}
	if !st.Unavailable() {
		t.Fatal("breaker not open after a failed write with threshold 1")
	}
	fail.Store(false) // Redis is back
	var last error
	deadline := time.Now().Add(time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		time.Sleep(5 * time.Millisecond) // poll interval with a deadline: the breaker's open window ends unannounced
		if last = st.Write(ctx, []SetOp{reviewFenceSet(t, st, "k", "v1")}, nil, "ch", []byte("m")); last == nil {
			return
		}
	}
	t.Errorf("no write succeeded within 1s after Redis came back; last error: %v; breaker open: %v", last, st.Unavailable())
}

// reviewFenceProxied returns a Store whose client goes through a fault
// proxy, with n connections handshaken and idle in its pool, so that a
// held request is sent on an existing connection rather than stuck in a
// new connection's handshake.
func reviewFenceProxied(t *testing.T, s *redistest.Server, n int, mod func(*redis.Options), timeout time.Duration) (*Store, *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ro := s.Options()
	ro.Addr = p.Addr()
	ro.PoolSize = n
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1
	if mod != nil {
		mod(ro)
	}
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	conns := make([]*redis.Conn, n)
	for i := range conns {
		conns[i] = rdb.Conn()
		if err := conns[i].Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		_ = c.Close() // back to the pool
	}
	st, err := New(Options{Redis: rdb, Namespace: "rvf", Timeout: timeout, DisableBreaker: true})
	if err != nil {
		t.Fatal(err)
	}
	return st, p
}

// TestReviewFenceLateRaiseLowersFence: the raise is a plain SET, so a raise
// whose reply was lost and that lands late lowers the fence. Timeline:
// write A fails (pending); the raise to 2 is held in the network and times
// out (gen stays 1); the retry of the raise to 2 works, write C (gen 2)
// works; write D (gen 2) is held and times out (pending); the raise to 3
// and write E (gen 3) work. Then the held raise lands: fence = 2. Then D
// lands: 2 is not below 2, so D overwrites E, which returned nil earlier.
func TestReviewFenceLateRaiseLowersFence(t *testing.T) {
	s := redistest.Real(t)
	st, p := reviewFenceProxied(t, s, 6, nil, 100*time.Millisecond)
	direct := s.Client(t)
	ctx := context.Background()
	write := func(v string) error {
		return st.Write(ctx, []SetOp{reviewFenceSet(t, st, "k", v)}, nil, "ch", []byte("m-"+v))
	}
	const holdRaise = 1500 * time.Millisecond
	const holdD = 3 * time.Second

	p.DelayRequests(holdRaise)
	if err := write("a"); err == nil {
		t.Fatal("write a through a held proxy succeeded")
	}
	if err := write("b"); err == nil { // its raise (SET fence 2) is held and times out
		t.Fatal("write b through a held proxy succeeded")
	}
	p.DelayRequests(0)
	if err := write("c"); err != nil {
		t.Fatalf("write c: %v", err)
	}
	p.DelayRequests(holdD)
	if err := write("d"); err == nil {
		t.Fatal("write d through a held proxy succeeded")
	}
	p.DelayRequests(0)
	if err := write("e"); err != nil {
		t.Fatalf("write e: %v", err)
	}
	time.Sleep(holdD + 500*time.Millisecond) // the held raise, then d, land
	it, ok, err := st.Get(ctx, "k")
	var got string
	if err == nil && ok {
		err = st.Decode(it, &got)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got != "e" {
		f, _ := direct.Get(ctx, FenceKey(st)).Result()
		t.Errorf("k no longer holds e (the last write, which returned nil): the late write d overwrote it; fence key now %q", f)
	}
}
