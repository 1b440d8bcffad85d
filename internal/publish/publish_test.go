package publish

import (
	"context"
	"fmt"
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
}

func TestPublishRing(t *testing.T) {
	a, b := redistest.Mini(t), redistest.Mini(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr, "b": b.Addr}})
	t.Cleanup(func() { _ = ring.Close() })
	receiveInOrder(t, ring)
}
