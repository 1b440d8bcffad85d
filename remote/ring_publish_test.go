package remote_test

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// openBreakerHook fails every GET with a refused dial, before anything is
// sent, and, right after a pipeline of writes has gone through, makes one
// such GET on the store, which opens the breaker (threshold 1) while the
// write is under way.
type openBreakerHook struct {
	st **remote.Store
}

var errHookRefused = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}

func (h openBreakerHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h openBreakerHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "get" {
			cmd.SetErr(errHookRefused)
			return errHookRefused
		}
		return next(ctx, cmd)
	}
}
func (h openBreakerHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if len(cmds) > 0 && cmds[0].Name() == "set" {
			_, _, _ = (*h.st).Get(context.Background(), "other")
		}
		return err
	}
}

// TestWriteAnnouncedWhenBreakerOpensMidway: on a Ring the writes and the
// publish are two steps. When another call opens the breaker between
// them, a write that succeeded must still be announced, or return an
// error (which hands its message to the bus's resend path): never nil for
// a write nobody hears of.
func TestWriteAnnouncedWhenBreakerOpensMidway(t *testing.T) {
	s1, s2 := redistest.Mini(t), redistest.Mini(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": s1.Addr, "b": s2.Addr}})
	t.Cleanup(func() { _ = ring.Close() })
	var st *remote.Store
	ring.AddHook(openBreakerHook{st: &st})
	closed := 0
	st = newStore(t, ring, remote.Options{BreakerThreshold: 1, BreakerMinOpen: time.Minute, BreakerMaxOpen: time.Minute,
		OnBreakerChange: func(open bool) {
			// The write's own success closes the breaker again; another
			// call failing just after that, as one in flight on another
			// goroutine would, opens it before the write's publish.
			if !open && closed == 0 {
				closed++
				_, _, _ = st.Get(context.Background(), "other")
			}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := ring.Subscribe(ctx, "inval")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	data, _ := st.Encode("k", 1, time.Minute)
	err := st.Write(ctx, []remote.SetOp{{Key: "k", Data: data, TTL: time.Minute}}, nil, "inval", []byte("msg"))
	if !st.Unavailable() {
		t.Fatal("the breaker did not open during the write; the test did not set up its fault")
	}
	if err != nil {
		return // the caller knows to resend the message
	}
	if err := ring.Publish(ctx, "inval", "end").Err(); err != nil {
		t.Fatal(err)
	}
	m, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Payload != "msg" {
		t.Errorf("Write returned nil, but its message was never published (first message heard: %q)", m.Payload)
	}
}
