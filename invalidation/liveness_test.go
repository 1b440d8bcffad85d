package invalidation

import (
	"math"
	"testing"
	"time"
)

// testBus is a Bus with no Redis and no goroutines, for driving the state
// machine by hand with synthetic monotonic times.
func testBus(t *testing.T, o Options) (*Bus, *recorder) {
	t.Helper()
	b := &Bus{
		opts:     o.withDefaults(),
		start:    time.Now(),
		nodeID:   testOrigin,
		kick:     make(chan struct{}, 1),
		ready:    make(chan struct{}),
		handlers: map[string][]*Registration{},
	}
	r := &recorder{}
	if _, err := b.Register("ns", r); err != nil {
		t.Fatal(err)
	}
	return b, r
}

func TestLivenessDeadline(t *testing.T) {
	b, r := testBus(t, Options{MaxStaleness: time.Second})
	const sent = int64(1000)
	deadline := sent + int64(time.Second-time.Second/10) // MaxStaleness minus the margin

	b.live.beats = []beat{{seq: 5, sent: sent}}
	b.heardLocked(4, sent+10) // not a heartbeat we sent
	if b.Usable() {
		t.Fatalf("usable after an unknown heartbeat")
	}
	b.heardLocked(5, sent+10)
	if !b.Usable() || b.live.deadline != deadline {
		t.Fatalf("after heartbeat: usable %v, deadline %d; want true, %d", b.Usable(), b.live.deadline, deadline)
	}
	select {
	case <-b.ready:
	default:
		t.Errorf("ready not closed by the first heartbeat")
	}

	if _, next := b.checkLocked(deadline - 1); !b.Usable() || next != deadline {
		t.Errorf("just before the deadline: usable %v, next check %d; want true, %d", b.Usable(), next, deadline)
	}
	b.checkLocked(deadline)
	if _, _, all := r.counts(); b.Usable() || all != 1 || b.n.clearsStale.Load() != 1 {
		t.Errorf("at the deadline: usable %v, clears %d, stale clears %d; want false, 1, 1", b.Usable(), all, b.n.clearsStale.Load())
	}

	// A heartbeat that arrives after its own deadline proves nothing.
	b.live.beats = append(b.live.beats, beat{seq: 6, sent: sent + 1})
	b.heardLocked(6, deadline+1)
	if b.Usable() {
		t.Errorf("usable after a heartbeat heard past its deadline")
	}
	// A fresh one does, and ends the bypass: the first one, before the
	// first heartbeat (sent+10), plus this one (5).
	b.live.beats = append(b.live.beats, beat{seq: 7, sent: deadline})
	b.heardLocked(7, deadline+5)
	if want := sent + 10 + 5; !b.Usable() || b.live.bypass != want {
		t.Errorf("after a fresh heartbeat: usable %v, bypass %d; want true, %d", b.Usable(), b.live.bypass, want)
	}
}

func TestReconnectNeedsNewHeartbeat(t *testing.T) {
	b, r := testBus(t, Options{})
	b.live.beats = []beat{{seq: 1, sent: 100}}
	b.heardLocked(1, 200)
	b.reconnected()
	if _, _, all := r.counts(); b.Usable() || all != 1 || b.live.deadline != 0 {
		t.Errorf("after reconnect: usable %v, clears %d, deadline %d; want false, 1, 0", b.Usable(), all, b.live.deadline)
	}
}

func TestGapExpiryPlansWatchdog(t *testing.T) {
	b, r := testBus(t, Options{MaxStaleness: time.Second, GapGrace: 100 * time.Millisecond})
	m := message{op: OpDelete, origin: "peerpeerpeerpeer", namespace: "ns", keys: []string{"k"}}
	now := time.Now()
	for _, seq := range []uint64{1, 3} {
		m.seq = seq
		d := decoded(t, m)
		b.applyLocked(&d, now)
	}
	at := int64(now.Sub(b.start))
	grace := int64(100 * time.Millisecond)
	if _, next := b.checkLocked(at); next != at+grace {
		t.Errorf("next check = %d, want gap expiry at %d", next, at+grace)
	}
	b.checkLocked(at + grace)
	if _, _, all := r.counts(); all != 1 || b.n.clearsGap.Load() != 1 || b.n.sequenceGaps.Load() != 1 {
		t.Errorf("after grace: clears %d, gap clears %d, gaps %d; want 1, 1, 1", all, b.n.clearsGap.Load(), b.n.sequenceGaps.Load())
	}
}

// TestHugeDurationsDoNotWrap: MaxStaleness or GapGrace near the largest
// duration must mean "a long time", not wrap around. The watchdog forgets
// peers idle for 10*MaxStaleness and gives a gap up at its start plus
// GapGrace; both sums overflowed into the past, so the bus forgot every
// peer (and with it their sequence numbers), gave every gap up at once,
// clearing every L1, and its watchdog woke again at once, for ever.
func TestHugeDurationsDoNotWrap(t *testing.T) {
	const forever = time.Duration(math.MaxInt64)
	tests := []struct {
		name string
		give Options
	}{
		{name: "MaxStaleness largest", give: Options{MaxStaleness: forever, HeartbeatInterval: time.Second, GapGrace: time.Second}},
		{name: "GapGrace near largest", give: Options{MaxStaleness: forever, HeartbeatInterval: 1, GapGrace: forever - 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, r := testBus(t, tt.give)
			m := message{op: OpDelete, origin: "peerpeerpeerpeer", namespace: "ns", keys: []string{"k"}}
			now := time.Now()
			for _, seq := range []uint64{1, 3} { // 2 is late: a gap opens
				m.seq = seq
				b.applyLocked(&m, now)
			}
			at := int64(now.Sub(b.start)) + int64(time.Millisecond)
			_, next := b.checkLocked(at)
			if _, _, all := r.counts(); next <= at || all != 0 || len(b.peers.m) != 1 {
				t.Errorf("1ms after a gap opened: next check in %v, clears %d, peers %d; want a later check, 0, 1",
					time.Duration(next-at), all, len(b.peers.m))
			}
		})
	}
}
