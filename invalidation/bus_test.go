package invalidation

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// waitTimeout bounds every poll: generous, since -race on a small machine is
// slow, and a passing test never waits for it.
const waitTimeout = 10 * time.Second

// recorder is a Handler that remembers what it was asked.
type recorder struct {
	mu    sync.Mutex
	keys  []string
	nkeys int
	all   int
}

func (r *recorder) Invalidate(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nkeys += len(keys)
	// The first 1000 keys are enough to check; more would make a test of
	// a huge message measure the recorder.
	for _, k := range keys[:min(len(keys), max(0, 1000-len(r.keys)))] {
		r.keys = append(r.keys, strings.Clone(k)) // keys must not be retained
	}
}

func (r *recorder) InvalidateAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all++
}

func (r *recorder) counts() (keys []string, nkeys, all int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...), r.nkeys, r.all
}

// newBus makes a bus with its own client on s, closed when the test ends.
func newBus(t testing.TB, s *redistest.Server, o Options) *Bus {
	t.Helper()
	o.Redis = s.Client(t)
	b, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func register(t testing.TB, b *Bus, ns string) *recorder {
	t.Helper()
	r := &recorder{}
	if _, err := b.Register(ns, r); err != nil {
		t.Fatalf("Register(%q): %v", ns, err)
	}
	return r
}

// waitFor polls cond until it holds or waitTimeout passes. The bus offers no
// signal for "a message was applied", so tests poll its effects.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(time.Millisecond) // poll interval, not synchronization
	}
}

func publish(t testing.TB, c redis.UniversalClient, channel string, payloads ...[]byte) {
	t.Helper()
	_, err := c.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		for _, m := range payloads {
			p.Publish(context.Background(), channel, m)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func TestNewIsUsable(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		b := newBus(t, s, Options{})
		waitFor(t, "Usable", b.Usable)
		st := b.Stats()
		if !st.Usable || st.HeartbeatsHeard == 0 || st.HeartbeatAge <= 0 || st.HeartbeatAge > 2*time.Second {
			t.Errorf("Stats() = %+v, want usable with a heartbeat heard", st)
		}
		if len(b.NodeID()) != 2*nodeIDLen || b.Channel() != defaultChannel {
			t.Errorf("NodeID(), Channel() = %q, %q", b.NodeID(), b.Channel())
		}
	})
}

func TestNewErrors(t *testing.T) {
	if _, err := New(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "Options.Redis") {
		t.Errorf("New without Redis = %v, want an error naming Options.Redis", err)
	}
}

// TestStartWithoutRedis: New succeeds while Redis refuses connections; the
// bus is unusable (WaitUsable times out) and becomes usable by itself once
// Redis answers, with no call from the caller.
func TestStartWithoutRedis(t *testing.T) {
	s := redistest.Real(t)
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Refuse(true)
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	start := time.Now()
	b, err := New(context.Background(), Options{Redis: c, ConfirmTimeout: 200 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("New with Redis refusing connections = %v, want a bus", err)
	}
	defer b.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("New took %v with Redis down; want it bounded by ConfirmTimeout", d)
	}
	if b.Usable() {
		t.Fatal("Usable() with Redis down = true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = b.WaitUsable(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitUsable with Redis down = %v, want DeadlineExceeded", err)
	}
	if b.Stats().SubscribeErrors == 0 {
		t.Error("SubscribeErrors = 0 with Redis down")
	}
	p.Refuse(false)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WaitUsable(ctx); err != nil {
		t.Fatalf("WaitUsable after Redis came back = %v, want nil (the bus heals by itself)", err)
	}
}

func TestPeerInvalidation(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		a, b := newBus(t, s, Options{}), newBus(t, s, Options{})
		ra, rb, rbOther := register(t, a, "ns"), register(t, b, "ns"), register(t, b, "other")
		rb2 := register(t, b, "ns") // two caches of one namespace on one bus
		raw := s.Client(t)

		publish(t, raw, a.Channel(), a.Message("ns", OpDelete, []string{"k1", "k2"}))
		waitFor(t, "B's handlers to get k1, k2", func() bool {
			_, n1, _ := rb.counts()
			_, n2, _ := rb2.counts()
			return n1 == 2 && n2 == 2
		})
		if keys, _, _ := rb.counts(); strings.Join(keys, ",") != "k1,k2" {
			t.Errorf("B got keys %q, want k1,k2", keys)
		}
		waitFor(t, "A to skip its own message", func() bool { return a.Stats().OwnSkipped == 1 })
		if _, n, all := ra.counts(); n != 0 || all != 0 {
			t.Errorf("A's own handler got %d keys, %d clears; want none", n, all)
		}

		// The message of a write whose round trip failed is applied on
		// the writer's node when it comes back: the write may land late.
		failed := a.Message("ns", OpDelete, []string{"k3"})
		a.WriteFailed(failed)
		publish(t, raw, a.Channel(), failed)
		waitFor(t, "A to apply its failed write's message", func() bool { return a.Stats().OwnApplied == 1 })
		if keys, _, _ := ra.counts(); strings.Join(keys, ",") != "k3" {
			t.Errorf("A's own handler got keys %q, want k3", keys)
		}
		waitFor(t, "B's handlers to get k3", func() bool { _, n, _ := rb.counts(); return n == 3 })

		publish(t, raw, a.Channel(), a.Message("ns", OpClear, nil))
		waitFor(t, "B's namespace clear", func() bool { _, _, all := rb.counts(); return all == 1 })
		if _, n, all := rbOther.counts(); n != 0 || all != 0 {
			t.Errorf("other namespace got %d keys, %d clears; want none", n, all)
		}
		st := b.Stats()
		if st.Received != 3 || st.ReceivedKeys != 3 || st.FullClearsNamespace != 1 || st.Registrations != 3 || st.Peers != 1 {
			t.Errorf("B Stats() = %+v, want 3 received, 3 keys, 1 namespace clear, 3 registrations, 1 peer", st)
		}
		if lag := b.DeliveryLag(); lag.Count == 0 {
			t.Errorf("DeliveryLag().Count = 0, want samples")
		}
	})
}

func TestForeignAndMalformedIgnored(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		b := newBus(t, s, Options{})
		r := register(t, b, "ns")
		valid := (&Bus{nodeID: testOrigin}).Message("ns", OpDelete, []string{"k"})
		publish(t, s.Client(t), b.Channel(),
			[]byte("hello"), []byte{magic, 9, 1}, valid[:len(valid)-1], append(valid, 'x'), valid)
		waitFor(t, "the valid message", func() bool { return b.Stats().Received == 1 })
		st := b.Stats()
		if st.Foreign != 2 || st.Malformed != 2 {
			t.Errorf("Foreign, Malformed = %d, %d, want 2, 2", st.Foreign, st.Malformed)
		}
		if keys, _, _ := r.counts(); strings.Join(keys, ",") != "k" {
			t.Errorf("handler got %q, want k", keys)
		}
	})
}

// fakePeer encodes messages from a node that is not a Bus.
func fakePeer(seq uint64, keys ...string) []byte {
	return appendMessage(nil, &message{op: OpDelete, origin: testOrigin, seq: seq, sent: time.Now().UnixNano(), namespace: "ns", keys: keys})
}

func TestSequenceGap(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		b := newBus(t, s, Options{MaxStaleness: time.Second, GapGrace: 50 * time.Millisecond})
		r := register(t, b, "ns")
		publish(t, s.Client(t), b.Channel(), fakePeer(1, "a"), fakePeer(3, "c"))
		waitFor(t, "a gap clear", func() bool { return b.Stats().FullClearsGap == 1 })
		if _, n, all := r.counts(); n != 2 || all < 1 {
			t.Errorf("handler got %d keys, %d clears; want 2 keys and a clear", n, all)
		}
		if st := b.Stats(); st.SequenceGaps != 1 {
			t.Errorf("SequenceGaps = %d, want 1", st.SequenceGaps)
		}
	})
}

func TestSequenceReorderedNoClear(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		b := newBus(t, s, Options{MaxStaleness: time.Second, GapGrace: 50 * time.Millisecond})
		register(t, b, "ns")
		publish(t, s.Client(t), b.Channel(), fakePeer(1, "a"), fakePeer(3, "c"), fakePeer(2, "b"))
		waitFor(t, "three messages", func() bool { return b.Stats().Received == 3 })
		// No gap is open, so none can expire later.
		b.mu.Lock()
		open := b.peers.gaps
		b.mu.Unlock()
		if st := b.Stats(); open != 0 || st.FullClearsGap != 0 || st.SequenceGaps != 0 {
			t.Errorf("open gaps %d, FullClearsGap %d, SequenceGaps %d; want 0, 0, 0", open, st.FullClearsGap, st.SequenceGaps)
		}
	})
}

func TestSequenceJumpClearsAtOnce(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		b := newBus(t, s, Options{})
		register(t, b, "ns")
		publish(t, s.Client(t), b.Channel(), fakePeer(1, "a"), fakePeer(10*maxMissing, "b"))
		waitFor(t, "a gap clear", func() bool { return b.Stats().FullClearsGap == 1 })
	})
}

func TestFlood(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		const total, batch = 50_000, 1000
		b := newBus(t, s, Options{})
		r := register(t, b, "ns")
		raw := s.Client(t)
		// A fake peer, so that no heartbeat shares the sequence: a real
		// node's heartbeat could overtake a batch by more than GapGrace on a
		// slow machine, which is a gap.
		for i := 0; i < total; i += batch {
			msgs := make([][]byte, batch)
			for j := range msgs {
				msgs[j] = fakePeer(uint64(i+j+1), "k")
			}
			publish(t, raw, b.Channel(), msgs...)
		}
		waitFor(t, "every message", func() bool { return b.Stats().Received == total })
		st := b.Stats()
		if _, n, _ := r.counts(); n != total || st.ReceivedKeys != total || st.SequenceGaps != 0 {
			t.Errorf("handler keys %d, Stats %+v; want %d keys and no gap", n, st, total)
		}
	})
}

func TestRegistrationClose(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		a, b := newBus(t, s, Options{}), newBus(t, s, Options{})
		r := &recorder{}
		reg, err := b.Register("ns", r)
		if err != nil {
			t.Fatal(err)
		}
		keep := register(t, b, "ns")
		reg.Close()
		reg.Close() // idempotent
		publish(t, s.Client(t), a.Channel(), a.Message("ns", OpDelete, []string{"k"}))
		waitFor(t, "the remaining handler", func() bool { _, n, _ := keep.counts(); return n == 1 })
		if _, n, all := r.counts(); n != 0 || all != 0 {
			t.Errorf("closed registration got %d keys, %d clears", n, all)
		}
		if st := b.Stats(); st.Registrations != 1 {
			t.Errorf("Registrations = %d, want 1", st.Registrations)
		}
	})
}

func TestCloseIdempotent(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		b := newBus(t, s, Options{})
		reg, err := b.Register("ns", &recorder{})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close() = %v", err)
		}
		reg.Close()
		if b.Usable() {
			t.Errorf("Usable() after Close = true")
		}
		if _, err := b.Register("ns", &recorder{}); !errors.Is(err, ErrClosed) {
			t.Errorf("Register after Close = %v, want ErrClosed", err)
		}
		if p := b.Message("ns", OpDelete, []string{"k"}); len(p) == 0 {
			t.Errorf("Message after Close is empty")
		}
	})
}

func TestRegisterErrors(t *testing.T) {
	b := newBus(t, redistest.Mini(t), Options{})
	if _, err := b.Register("", &recorder{}); err == nil {
		t.Errorf("Register with empty namespace succeeded")
	}
	if _, err := b.Register("ns", nil); err == nil {
		t.Errorf("Register with nil handler succeeded")
	}
}

// TestShared: registrations of one namespace on one bus share one value,
// other namespaces get their own, and the value outlives the namespace's
// registrations (a cache made after the others closed shares their fence).
func TestShared(t *testing.T) {
	b := newBus(t, redistest.Mini(t), Options{})
	made := 0
	newValue := func() any { made++; return new(int) }
	r1, err := b.Register("ns", &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Register("ns", &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.Register("other", &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	v1, v2, vo := r1.Shared(newValue), r2.Shared(newValue), other.Shared(newValue)
	if v1 != v2 || v1 == vo || made != 2 {
		t.Errorf("Shared: same namespace %p and %p, other %p, made %d; want the first two equal, the third apart, 2 made", v1, v2, vo, made)
	}
	r1.Close()
	r2.Close()
	r3, err := b.Register("ns", &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if v := r3.Shared(newValue); v != v1 {
		t.Errorf("Shared after every registration of the namespace closed = %p, want the same %p", v, v1)
	}
}

func TestRestartClearsAndRecovers(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		b := newBus(t, s, Options{MaxStaleness: 600 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
		r := register(t, b, "ns")
		waitFor(t, "Usable", b.Usable)
		before := b.Stats()
		s.Restart(t)
		waitFor(t, "a reconnect clear", func() bool { return b.Stats().FullClearsReconnect > before.FullClearsReconnect })
		waitFor(t, "Usable again", b.Usable)
		st := b.Stats()
		if _, _, all := r.counts(); all == 0 || st.Reconnects == 0 || st.BypassNanos <= before.BypassNanos {
			t.Errorf("clears %d, Stats %+v; want a clear, a reconnect and more bypass time than %d", all, st, before.BypassNanos)
		}
	})
}

// TestHealsSoonAfterBlackhole: a resubscription dialled while Redis was
// blackholed must not hold the bus once Redis answers again. Before the
// dial got the confirmation's deadline, its HELLO waited out the client's
// ReadTimeout (30 s here) for a reply the blackhole had swallowed, so the
// bus stayed unusable, and Close blocked, for that long after Redis was
// back.
func TestHealsSoonAfterBlackhole(t *testing.T) {
	s := redistest.Real(t)
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: 30 * time.Second,
		ContextTimeoutEnabled: true, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	b, err := New(context.Background(), Options{Redis: c, ConfirmTimeout: 200 * time.Millisecond,
		HeartbeatInterval: 50 * time.Millisecond, MaxStaleness: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.WaitUsable(ctx); err != nil {
		t.Fatal(err)
	}
	p.Blackhole(true)
	waitFor(t, "the bus to notice the blackhole", func() bool { return !b.Usable() })
	// Let a resubscription start inside the blackhole: it shows as a
	// subscribe error once it gives up (with the fix, after 200 ms), and
	// not at all before the fix; either way one is in flight by then.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && b.Stats().SubscribeErrors == 0; {
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	p.Blackhole(false)
	healed, cancelHeal := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelHeal()
	if err := b.WaitUsable(healed); err != nil {
		t.Errorf("bus still unusable 5 s after Redis answered again: %v", err)
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Logf("%s", buf[:n])
	}
	start := time.Now()
	_ = b.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v after the blackhole, want it bounded by ConfirmTimeout, not ReadTimeout", d)
	}
}
