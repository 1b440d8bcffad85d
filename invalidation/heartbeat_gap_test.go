package invalidation

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// dropPublishHook fails the next PUBLISH, or script (a heartbeat goes as a
// script on Redis 7), without sending it while armed.
type dropPublishHook struct{ arm, dropped atomic.Bool }

func (*dropPublishHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *dropPublishHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); (n == "publish" || n == "evalsha" || n == "eval") && h.arm.CompareAndSwap(true, false) {
			err := errors.New("review: publish dropped")
			cmd.SetErr(err)
			h.dropped.Store(true)
			return err
		}
		return next(ctx, cmd)
	}
}
func (*dropPublishHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestLostHeartbeatClearsEveryPeer: heartbeats take numbers from the
// same sequence as invalidations, so one heartbeat that fails to publish on
// node A (a pool timeout, a blip; counted only in A's HeartbeatErrors) is a
// sequence gap on every other node, and each of them clears all of its L1
// caches GapGrace later, although no invalidation was lost.
func TestLostHeartbeatClearsEveryPeer(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		hook := &dropPublishHook{}
		ca := s.Client(t)
		ca.AddHook(hook)
		o := fastOptions
		o.Redis = ca
		a, err := New(context.Background(), o)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { _ = a.Close() })
		b := newBus(t, s, fastOptions)
		r := register(t, b, "ns")
		waitFor(t, "both usable", func() bool { return a.Usable() && b.Usable() })
		_, _, allBefore := r.counts()
		gapsBefore := b.Stats().FullClearsGap

		hook.arm.Store(true)
		waitFor(t, "a dropped heartbeat", hook.dropped.Load)
		// A's next heartbeat opens the gap; GapGrace later B decides. Give it
		// a generous number of intervals.
		deadline := time.Now().Add(20 * (fastOptions.HeartbeatInterval + fastOptions.GapGrace))
		for time.Now().Before(deadline) {
			if b.Stats().FullClearsGap > gapsBefore {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if st := b.Stats(); st.FullClearsGap > gapsBefore {
			_, _, all := r.counts()
			t.Errorf("one lost heartbeat of A (no invalidation lost) made B clear every L1: gap clears %d -> %d, handler clears %d -> %d",
				gapsBefore, st.FullClearsGap, allBefore, all)
		}
	})
}

// TestHeartbeatsCostOneDeliveryEach: each bus hears its own heartbeats and
// no other node's, so heartbeats cost O(nodes) deliveries in Redis, not
// O(nodes²): a bus's heartbeat channel has exactly one subscriber, and the
// buses hear their own heartbeats while counting none of their peers'.
func TestHeartbeatsCostOneDeliveryEach(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		buses := []*Bus{newBus(t, s, fastOptions), newBus(t, s, fastOptions), newBus(t, s, fastOptions)}
		waitFor(t, "every bus to hear three own heartbeats", func() bool {
			for _, b := range buses {
				if b.Stats().HeartbeatsHeard < 3 {
					return false
				}
			}
			return true
		})
		raw := s.Client(t)
		for _, b := range buses {
			if n := b.Stats().PeerHeartbeats; n != 0 {
				t.Errorf("bus %s heard %d peer heartbeats, want 0", b.NodeID(), n)
			}
			subs, err := raw.PubSubNumSub(context.Background(), b.beatCh).Result()
			if err != nil {
				t.Fatalf("PUBSUB NUMSUB: %v", err)
			}
			if subs[b.beatCh] != 1 {
				t.Errorf("PUBSUB NUMSUB %s = %d, want 1", b.beatCh, subs[b.beatCh])
			}
		}
	})
}
