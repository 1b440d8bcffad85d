package invalidation

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// Fault tests need a real redis-server: miniredis cannot kill pub/sub
// clients or freeze.

// fastOptions make liveness react within a fraction of a second.
var fastOptions = Options{MaxStaleness: 300 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond, GapGrace: 50 * time.Millisecond}

func TestKillPubSubClients(t *testing.T) {
	s := redistest.Real(t)
	a, b := newBus(t, s, fastOptions), newBus(t, s, fastOptions)
	r := register(t, b, "ns")
	waitFor(t, "Usable", func() bool { return a.Usable() && b.Usable() })
	before := b.Stats()

	if n := s.KillPubSubClients(t); n < 2 {
		t.Fatalf("KillPubSubClients = %d, want at least 2", n)
	}
	waitFor(t, "a reconnect", func() bool { return b.Stats().Reconnects > before.Reconnects })
	waitFor(t, "Usable again", b.Usable)
	st := b.Stats()
	if _, _, all := r.counts(); all == 0 || st.FullClearsReconnect == 0 || st.BypassNanos <= before.BypassNanos {
		t.Errorf("clears %d, Stats %+v; want a reconnect clear and more bypass time than %d", all, st, before.BypassNanos)
	}

	// Invalidations flow again over the new subscription.
	publish(t, s.Client(t), a.Channel(), a.Message("ns", OpDelete, []string{"after"}))
	waitFor(t, "a message after the reconnect", func() bool {
		keys, _, _ := r.counts()
		return len(keys) == 1 && keys[0] == "after"
	})
}

func TestPauseBypassesThenRecovers(t *testing.T) {
	s := redistest.Real(t)
	b := newBus(t, s, fastOptions)
	r := register(t, b, "ns")
	waitFor(t, "Usable", b.Usable)
	before := b.Stats()

	s.Pause(t)
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			s.Resume(t)
		}
	})
	waitFor(t, "the bypass", func() bool { return !b.Usable() })
	waitFor(t, "a stale clear", func() bool { return b.Stats().FullClearsStale > 0 })
	if _, _, all := r.counts(); all == 0 {
		t.Errorf("handler not cleared when liveness was lost")
	}

	s.Resume(t)
	resumed = true
	waitFor(t, "Usable again", b.Usable)
	if st := b.Stats(); st.BypassNanos <= before.BypassNanos || st.HeartbeatAge > fastOptions.MaxStaleness {
		t.Errorf("Stats() = %+v, want more bypass time than %d and a fresh heartbeat", st, before.BypassNanos)
	}
}

// TestUsableWithinStaleness checks the liveness bound itself: Usable never
// stays true longer than MaxStaleness after the last heartbeat it heard was
// sent, measured from the outside while the server is frozen.
func TestUsableWithinStaleness(t *testing.T) {
	s := redistest.Real(t)
	b := newBus(t, s, fastOptions)
	waitFor(t, "Usable", b.Usable)
	s.Pause(t)
	defer s.Resume(t)
	paused := time.Now()
	waitFor(t, "the bypass", func() bool { return !b.Usable() })
	// Nothing sent after the pause can have been heard, so the bus must
	// flip within MaxStaleness of the pause. The slack is for a loaded test
	// machine; TestLivenessDeadline checks the exact deadline.
	if d := time.Since(paused); d > fastOptions.MaxStaleness+time.Second {
		t.Errorf("bus stayed usable %v after the server froze, want <= %v", d, fastOptions.MaxStaleness)
	}
}
