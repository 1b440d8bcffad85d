package remote_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/remote"
)

// slowSetHook delays node pipelines that carry a SET but no PUBLISH: it
// models one shard answering a little later than another (GC, a busy
// node, network jitter), which a plain cluster pipeline must tolerate.
type slowSetHook struct{ d time.Duration }

func (slowSetHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (slowSetHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h slowSetHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		set, pub := false, false
		for _, c := range cmds {
			switch c.Name() {
			case "set":
				set = true
			case "publish":
				pub = true
			}
		}
		if set && !pub {
			time.Sleep(h.d)
		}
		return next(ctx, cmds)
	}
}

// TestClusterWritePublishesAfterSet: on Redis Cluster a subscriber must
// not hear of a write before the write executed, even when the key's
// shard answers slowly. A plain pipeline would send PUBLISH (keyless,
// routed to any master) in parallel with the SET; a peer refilling its L1
// on that early message would read the old value from L2 and keep it, with
// an epoch newer than the invalidation, until LocalTTL.
func TestClusterWritePublishesAfterSet(t *testing.T) {
	cc := startCluster(t, 3)
	reader := newStore(t, cc, remote.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	w := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cc.Options().Addrs})
	w.OnNewNode(func(rdb *redis.Client) { rdb.AddHook(slowSetHook{d: 300 * time.Millisecond}) })
	t.Cleanup(func() { _ = w.Close() })
	writer := newStore(t, w, remote.Options{})

	sub := cc.Subscribe(ctx, "inval")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}

	stale := 0
	const attempts = 6
	for i := range attempts {
		key := fmt.Sprint("k", i)
		set(t, reader, key, "old", time.Minute)
		data, _ := writer.Encode(key, "new", time.Minute)
		done := make(chan error, 1)
		msg := fmt.Sprint("inval-", i)
		go func() {
			done <- writer.Write(ctx, []remote.SetOp{{Key: key, Data: data, TTL: time.Minute}}, nil, "inval", []byte(msg))
		}()
		for {
			m, err := sub.ReceiveMessage(ctx)
			if err != nil {
				t.Fatalf("ReceiveMessage: %v", err)
			}
			if m.Payload == msg {
				break
			}
		}
		// What a peer does right after applying the invalidation: a miss
		// in L1, a read from L2, a fill of L1.
		it, ok, err := reader.Get(ctx, key)
		var got string
		if ok {
			_ = reader.Decode(it, &got)
		}
		if err := <-done; err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err == nil && ok && got == "old" {
			stale++
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d writes: the invalidation was delivered before the SET executed; a peer refilling on it reads the old value", stale, attempts)
	}
}
