package remote_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// startCluster starts a Redis Cluster of n masters on loopback (slots split
// evenly, no replicas) and returns a client for it. The processes are killed
// and reaped when the test ends. Like redistest.Real, it skips without
// redis-server unless TIERCACHE_REQUIRE_REDIS=1.
func startCluster(t *testing.T, n int) *redis.ClusterClient {
	t.Helper()
	if n != 3 {
		t.Fatalf("startCluster(%d): redistest starts three masters", n)
	}
	return redistest.NewCluster(t).Client(t)
}

func TestCluster(t *testing.T) {
	cc := startCluster(t, 3)
	st := newStore(t, cc, remote.Options{})
	ctx := context.Background()

	// Keys spread over many slots and all three nodes; two share a hash tag.
	keys := make([]string, 50)
	var sets []remote.SetOp
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
		if i%5 == 0 {
			keys[i] = fmt.Sprint("{tag}", i)
		}
		if i%2 == 0 {
			data, _ := st.Encode(keys[i], i, time.Minute)
			sets = append(sets, remote.SetOp{Key: keys[i], Data: data, TTL: time.Minute})
		}
	}
	sub := cc.Subscribe(ctx, "inval")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := st.Write(ctx, sets, []string{"k1", "k3"}, "inval", []byte("batch")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if msg, err := sub.ReceiveMessage(rctx); err != nil || msg.Payload != "batch" {
		t.Errorf("subscriber got %v, %v; want the message", msg, err)
	}

	before := st.Stats().RoundTrips
	items, ok, err := st.GetMany(ctx, keys)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if n := st.Stats().RoundTrips - before; n != 1 {
		t.Errorf("GetMany took %d round trips, want 1", n)
	}
	for i := range keys {
		var got int
		if ok[i] != (i%2 == 0) || ok[i] && (st.Decode(items[i], &got) != nil || got != i) {
			t.Errorf("GetMany: key %q = %d, %v; want present %v", keys[i], got, ok[i], i%2 == 0)
		}
	}

	leases, err := st.GetOrLeaseMany(ctx, keys[:10], leaseTTL)
	if err != nil {
		t.Fatalf("GetOrLeaseMany: %v", err)
	}
	var fills []remote.FillOp
	for i, l := range leases {
		if want := map[bool]remote.LeaseState{true: remote.LeaseHit, false: remote.LeaseGranted}[i%2 == 0]; l.State != want {
			t.Errorf("GetOrLeaseMany: %q is %v, want %v", keys[i], l.State, want)
		}
		if l.State == remote.LeaseGranted {
			data, _ := st.Encode(keys[i], -i, time.Minute)
			fills = append(fills, remote.FillOp{Key: keys[i], Token: l.Token, Data: data, TTL: time.Minute})
		}
	}
	installed, err := st.FillMany(ctx, fills)
	if err != nil || fmt.Sprint(installed) != "[true true true true true]" {
		t.Errorf("FillMany() = %v, %v; want all installed", installed, err)
	}
}
