package publish

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// receiveInOrder publishes n messages with Publish and checks that a
// subscriber of the same client kind hears all of them, in order.
func receiveInOrder(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := rdb.Subscribe(ctx, "tiercache:test")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	const n = 200
	for i := range n {
		if err := Publish(ctx, rdb, "tiercache:test", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("Publish #%d: %v", i, err)
		}
	}
	for i := range n {
		m, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		if want := fmt.Sprint(i); m.Payload != want {
			t.Fatalf("message #%d = %q, want %q (out of order or lost)", i, m.Payload, want)
		}
	}
}

func TestPublishStandalone(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) { receiveInOrder(t, s.Client(t)) })
}

func TestPublishCluster(t *testing.T) {
	cl := redistest.NewCluster(t)
	receiveInOrder(t, cl.Client(t))
	receiveInOrderAsWrite(t, cl.Client(t)) // a Writer too: a cluster is slow to start
}

func TestPublishRing(t *testing.T) {
	a, b := redistest.Mini(t), redistest.Mini(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr, "b": b.Addr}})
	t.Cleanup(func() { _ = ring.Close() })
	receiveInOrder(t, ring)
}

// receiveInOrderAsWrite is receiveInOrder through a Writer.
func receiveInOrderAsWrite(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := rdb.Subscribe(ctx, "tiercache:test")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	var w Writer
	const n = 50
	for i := range n {
		if err := w.Publish(ctx, rdb, "tiercache:test", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("Writer.Publish #%d: %v", i, err)
		}
	}
	for i := range n {
		m, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		if want := fmt.Sprint(i); m.Payload != want {
			t.Fatalf("message #%d = %q, want %q (out of order or lost)", i, m.Payload, want)
		}
	}
}

// TestWriterPublishes: a Writer's messages arrive, in order, on every
// client kind, through the script where the server runs it and plainly
// where it does not (miniredis, a Ring); TestPublishCluster covers Cluster.
func TestWriterPublishes(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) { receiveInOrderAsWrite(t, s.Client(t)) })
	t.Run("ring", func(t *testing.T) {
		a, b := redistest.Mini(t), redistest.Mini(t)
		ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr, "b": b.Addr}})
		t.Cleanup(func() { _ = ring.Close() })
		receiveInOrderAsWrite(t, ring)
	})
}

// TestWriterRefusedOffMaster: a plain PUBLISH works on a replica and on a
// master cut off from its replicas; a Writer's is refused on both, with
// the server's error, which is what lets a heartbeat prove that its path
// runs through a master accepting writes.
func TestWriterRefusedOffMaster(t *testing.T) {
	ctx := context.Background()
	master := redistest.Real(t)
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := redistest.RealWith(t, "--replicaof", host, port)
	var w Writer
	rc := replica.Client(t)
	if err := Publish(ctx, rc, "ch", []byte("m")); err != nil {
		t.Fatalf("plain PUBLISH on a replica: %v", err)
	}
	if err := w.Publish(ctx, rc, "ch", []byte("m")); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
		t.Errorf("Writer.Publish on a replica = %v, want READONLY", err)
	}
	mc := master.Client(t)
	if err := mc.ConfigSet(ctx, "min-replicas-to-write", "2").Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(ctx, mc, "ch", []byte("m")); err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Errorf("Writer.Publish on a master with too few replicas = %v, want NOREPLICAS", err)
	}
	if err := mc.ConfigSet(ctx, "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(ctx, mc, "ch", []byte("m")); err != nil {
		t.Errorf("Writer.Publish on the master: %v", err)
	}
}
