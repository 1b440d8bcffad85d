package tiered

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestReviewProbeClosesBreakerOnWritePause: the breaker's probe is a PING
// (startProbe), not a call of the kind that failed. A Redis that answers
// PING but holds the cache's commands (CLIENT PAUSE WRITE, which Redis
// itself uses in FAILOVER and in a Cluster manual failover, and operators
// use for maintenance, holds SET, EVAL, EVALSHA and PUBLISH, not PING) makes
// every probe succeed: the breaker closes after each BreakerMinOpen, the
// window never doubles, and the next BreakerThreshold calls each wait out
// RedisTimeout again, over and over. When the probe was the caller's own
// call, a held lease command failed it, and the window grew to
// BreakerMaxOpen.
//
// Here reads of keys that miss (each a lease command, a write that the
// pause holds) run one after another for 2s of a 3s write pause, with
// RedisTimeout 100ms and default breaker settings. A breaker that stays
// open costs about BreakerThreshold slow reads plus one per failed probe
// (about 3 + 2s/0.2..1s); the PING probe makes about three slow reads per
// 100ms window. Fails: slow reads ~15 and more, breaker opened ~5 times.
// Fix: probe with a command of the kind the Store sends (a fenced or lease
// script on a throwaway key in the namespace, or the GETEX/SET NX the
// breaker saw fail), or do not reset the window to BreakerMinOpen until
// a real call succeeds.
func TestReviewProbeClosesBreakerOnWritePause(t *testing.T) {
	s := redistest.Real(t)
	c := newNode[string](t, s, func(o *Options) { o.RedisTimeout = 100 * time.Millisecond })
	ctx := context.Background()
	admin := s.Client(t)
	load := func(_ context.Context, k string) (string, error) { return "db-" + k, nil }
	if err := admin.Do(ctx, "CLIENT", "PAUSE", 3000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
	slow, reads := 0, 0
	for start := time.Now(); time.Since(start) < 2*time.Second; reads++ {
		t0 := time.Now()
		if _, err := c.GetOrLoad(ctx, fmt.Sprint("k", reads), load); err != nil {
			t.Fatalf("GetOrLoad during the pause: %v", err)
		}
		if time.Since(t0) >= 90*time.Millisecond {
			slow++
		}
	}
	if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats().L2
	if slow > 8 {
		t.Errorf("%d of %d reads in 2s of a write pause waited RedisTimeout (breaker opened %d times, %d probes): the PING probe keeps closing the breaker on a Redis that holds every lease command",
			slow, reads, st.BreakerOpens, st.BreakerProbes)
	}
}
