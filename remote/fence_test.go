package remote

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// waitHeld waits until p holds a request.
func waitHeld(t *testing.T, p *faultproxy.Proxy) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Held() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no request held after 5s")
		}
		time.Sleep(time.Millisecond) // poll: the proxy reads on its own goroutine
	}
}

// TestFenceEvictedRefusesLateWrite: a write that timed out and is held in
// the network must not land after a newer write returned, also when Redis
// evicted the fence key in between (maxmemory with an eviction policy, as
// a Redis in front of a database runs). A missing fence is a lost fence,
// never "no fence".
func TestFenceEvictedRefusesLateWrite(t *testing.T) {
	s := redistest.Real(t)
	st, p := reviewFenceProxied(t, s, 4, nil, 100*time.Millisecond)
	admin := s.Client(t)
	ctx := context.Background()
	write := func(v string) error {
		return st.Write(ctx, []SetOp{reviewFenceSet(t, st, "k", v)}, nil, "ch", []byte("m-"+v))
	}
	if err := write("a"); err != nil {
		t.Fatalf("write a: %v", err)
	}
	p.HoldRequests()
	if err := write("b"); err == nil {
		t.Fatal("write b through a holding proxy succeeded")
	}
	waitHeld(t, p)
	p.StopHolding()
	if err := write("c"); err != nil {
		t.Fatalf("write c: %v", err)
	}
	s.Evict(t, FenceKey(st))
	before := s.CommandCalls(t, "evalsha", "eval")
	p.ReleaseRequests()
	s.WaitScripts(t, before+1) // b has run
	got, err := admin.Get(ctx, "rvf:k").Bytes()
	if err == redis.Nil {
		return // c was evicted as well; b did not bring the old value back
	}
	if err != nil {
		t.Fatal(err)
	}
	it, res, rerr := st.read("k", got, time.Now())
	var v string
	if rerr == nil && res == readEntry {
		rerr = st.Decode(it, &v)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	if v != "c" {
		t.Errorf("k = %q after the held write landed, want %q (the newer write, which returned nil): the evicted fence let the late write through", v, "c")
	}
}
