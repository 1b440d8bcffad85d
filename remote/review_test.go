package remote_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// TestReviewScriptLeaseKnowsOwnToken: with the Lua lease script (servers
// before Redis 7.0), a lease command whose reply is lost and that go-redis
// sends again finds this caller's own marker; that is the caller's lease,
// on the single and the batch path, not another node's.
func TestReviewScriptLeaseKnowsOwnToken(t *testing.T) {
	s := redistest.Real(t)
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ro := s.Options()
	ro.Addr = p.Addr()
	ro.PoolSize = 1
	rdb := redis.NewClient(ro)
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := remote.New(remote.Options{Redis: rdb, Namespace: "test"})
	if err != nil {
		t.Fatal(err)
	}
	remote.UseScriptLease(st)
	ctx := context.Background()
	// Load the script first, so the lost reply is the lease's own.
	if _, err := st.GetOrLease(ctx, "warm", time.Minute); err != nil {
		t.Fatal(err)
	}

	p.DropNextReply()
	l, err := st.GetOrLease(ctx, "one", time.Minute)
	if err != nil || l.State != remote.LeaseGranted {
		t.Errorf("GetOrLease(one) after a lost reply = %v, %v; want granted", l.State, err)
	}
	p.DropNextReply()
	ls, err := st.GetOrLeaseMany(ctx, []string{"two", "three"}, time.Minute)
	if err != nil {
		t.Fatalf("GetOrLeaseMany: %v", err)
	}
	for i, l := range ls {
		if l.State != remote.LeaseGranted {
			t.Errorf("GetOrLeaseMany[%d] after a lost reply = %v; want granted", i, l.State)
		}
	}
	if p.Accepted() < 3 {
		t.Fatalf("proxy accepted %d connections; the dropped replies should have forced reconnects", p.Accepted())
	}
}

// TestReviewClusterWriteAfterScriptFlush: a Cluster Write that mixes sets
// and deletes, hash-tagged keys sharing a slot and keys on every master,
// after SCRIPT FLUSH on every node (each EVALSHA gets NOSCRIPT), writes
// every key, and every master written publishes the message once, plus the
// final publish.
func TestReviewClusterWriteAfterScriptFlush(t *testing.T) {
	cl := redistest.NewCluster(t)
	cc := cl.Client(t)
	ctx := context.Background()
	st, err := remote.New(remote.Options{Redis: cc, Namespace: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sets := []remote.SetOp{}
	var dels []string
	for _, k := range []string{"user:{42}:a", "user:{42}:b", "x", "y", "z", "w"} {
		d, err := st.Encode(k, "v-"+k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, remote.SetOp{Key: k, Data: d, TTL: time.Minute})
	}
	for _, k := range []string{"user:{42}:c", "q"} {
		if err := cc.Set(ctx, "test:"+k, "doomed", 0).Err(); err != nil {
			t.Fatal(err)
		}
		dels = append(dels, k)
	}
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.ScriptFlush(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	sub := cc.Subscribe(ctx, "chan")
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Write(ctx, sets, dels, "chan", []byte("msg")); err != nil {
		t.Fatalf("Write after SCRIPT FLUSH: %v", err)
	}
	masters := map[string]bool{}
	for _, op := range sets {
		n, err := cc.MasterForKey(ctx, "test:"+op.Key)
		if err != nil {
			t.Fatal(err)
		}
		masters[n.Options().Addr] = true
		it, ok, err := st.Get(ctx, op.Key)
		var v string
		if err == nil && ok {
			err = st.Decode(it, &v)
		}
		if err != nil || !ok || v != "v-"+op.Key {
			t.Errorf("Get(%s) = %q, %v, %v; want v-%s", op.Key, v, ok, err, op.Key)
		}
	}
	for _, k := range dels {
		n, _ := cc.MasterForKey(ctx, "test:"+k)
		masters[n.Options().Addr] = true
		if _, ok, _ := st.Get(ctx, k); ok {
			t.Errorf("deleted key %s still there", k)
		}
	}
	// Copies relayed from other masters arrive in their own time: read
	// until the expected count, each read bounded.
	want := len(masters) + 1
	for got := 0; got < want; got++ {
		if _, err := sub.ReceiveTimeout(ctx, 2*time.Second); err != nil {
			t.Fatalf("heard %d copies of the message, want %d (%d masters written, plus the final publish): %v", got, want, len(masters), err)
		}
	}
}
