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

// TestRingWriteMessageDelivered: on a *redis.Ring every invalidation a
// Write publishes reaches the channel's subscribers. A PUBLISH queued in a
// plain Ring pipeline is routed by hashing the word "publish", not the
// channel, so it lands on a shard nobody subscribed on, while the bus's
// heartbeats (Ring.Publish) keep it looking healthy.
func TestRingWriteMessageDelivered(t *testing.T) {
	s1, s2 := redistest.Mini(t), redistest.Mini(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": s1.Addr, "b": s2.Addr}})
	t.Cleanup(func() { _ = ring.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := newStore(t, ring, remote.Options{})

	sub := ring.Subscribe(ctx, "inval")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	const n = 20
	for i := range n {
		data, _ := st.Encode("k", i, time.Minute)
		if err := st.Write(ctx, []remote.SetOp{{Key: "k", Data: data, TTL: time.Minute}}, nil, "inval", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	// A sentinel through the channel's shard, as heartbeats go: everything
	// published before it on that shard has been delivered once it arrives.
	if err := ring.Publish(ctx, "inval", "end").Err(); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		m, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if m.Payload == "end" {
			break
		}
		got++
	}
	if got != n {
		t.Errorf("subscriber got %d of %d invalidations published by successful Writes; the rest went to another Ring shard", got, n)
	}
}
