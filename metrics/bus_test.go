package metrics_test

import (
	"context"
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// Series names of the bus collector.
const (
	published     = "tiercache_invalidation_messages_published_total"
	keysPublished = "tiercache_invalidation_keys_published_total"
	received      = "tiercache_invalidation_messages_received_total"
	keysReceived  = "tiercache_invalidation_keys_received_total"
	ownSkipped    = "tiercache_invalidation_own_messages_skipped_total"
	malformed     = "tiercache_invalidation_malformed_messages_total"
	foreign       = "tiercache_invalidation_foreign_messages_total"
	reconnects    = "tiercache_invalidation_reconnects_total"
	bypassSeconds = "tiercache_invalidation_bypass_seconds_total"
	usable        = "tiercache_invalidation_usable"
	peers         = "tiercache_invalidation_peers"
	registrations = "tiercache_invalidation_registrations"
	lagCount      = "tiercache_invalidation_delivery_lag_seconds_count"
)

func fullClears(reason string) string {
	return `tiercache_invalidation_full_clears_total{reason="` + reason + `"}`
}

// heartbeat lists the series that heartbeats move all the time.
var heartbeat = map[string]want{
	"tiercache_invalidation_heartbeats_sent_total":  anyChange,
	"tiercache_invalidation_heartbeats_heard_total": anyChange,
	"tiercache_invalidation_heartbeat_errors_total": exactly(0),
	"tiercache_invalidation_peer_heartbeats_total":  anyChange,
	"tiercache_invalidation_heartbeat_age_seconds":  anyChange,
	lagCount: anyChange,
}

func withHeartbeats(w map[string]want) map[string]want {
	out := maps.Clone(heartbeat)
	maps.Copy(out, w)
	return out
}

// busPair is two nodes, each with its own bus and a registry exporting it.
type busPair struct {
	a, b       *tiered.Cache[string]
	regA, regB *prometheus.Registry
}

func newBusPair(t *testing.T, s *redistest.Server) busPair {
	p := busPair{a: newCache(t, s, nil), b: newCache(t, s, nil)}
	p.regA = register(t, metrics.NewBusCollector(p.a.Bus(), metrics.Options{}))
	p.regB = register(t, metrics.NewBusCollector(p.b.Bus(), metrics.Options{}))
	// A bus learns of a peer from the peer's first invalidation (heartbeats
	// go only to their sender).
	eventually(t, "both buses usable", func() bool { return p.a.Bus().Usable() && p.b.Bus().Usable() })
	ctx := context.Background()
	if err := p.a.Delete(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	if err := p.b.Delete(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	// Also wait for each bus to hear its own warm-up message back, or that
	// echo lands in the first step's counts.
	eventually(t, "both buses track the other", func() bool {
		a, b := p.a.Bus().Stats(), p.b.Bus().Stats()
		return a.Peers == 1 && b.Peers == 1 && a.OwnSkipped >= 1 && b.OwnSkipped >= 1
	})
	return p
}

// step runs op, waits until done holds, and checks the changes on both
// nodes' bus metrics.
func (p busPair) step(t *testing.T, name string, op func(), done func() bool, wantA, wantB map[string]want) {
	t.Helper()
	beforeA, beforeB := scrape(t, p.regA), scrape(t, p.regB)
	op()
	eventually(t, name, done)
	expectDelta(t, name+" (a)", beforeA, scrape(t, p.regA), withHeartbeats(wantA))
	expectDelta(t, name+" (b)", beforeB, scrape(t, p.regB), withHeartbeats(wantB))
}

func TestBusCollector(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		ctx := context.Background()
		p := newBusPair(t, s)
		a, b := p.a.Bus(), p.b.Bus()

		for _, reg := range []*prometheus.Registry{p.regA, p.regB} {
			got := scrape(t, reg)
			if got[usable] != 1 || got[registrations] != 1 || got[peers] != 1 {
				t.Errorf("%s = %v, %s = %v, %s = %v; want 1, 1, 1",
					usable, got[usable], registrations, got[registrations], peers, got[peers])
			}
		}

		bRecv, aOwn := b.Stats().Received, a.Stats().OwnSkipped
		p.step(t, "Set on a", func() {
			if err := p.a.Set(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
		}, func() bool {
			return b.Stats().Received > bRecv && a.Stats().OwnSkipped > aOwn
		}, map[string]want{
			published:     exactly(1),
			keysPublished: exactly(1),
			ownSkipped:    exactly(1),
		}, map[string]want{
			received:     exactly(1),
			keysReceived: exactly(1),
		})

		bRecv, aOwn = b.Stats().Received, a.Stats().OwnSkipped
		p.step(t, "Delete of two keys on a", func() {
			if err := p.a.Delete(ctx, "k", "l"); err != nil {
				t.Fatal(err)
			}
		}, func() bool {
			return b.Stats().Received > bRecv && a.Stats().OwnSkipped > aOwn
		}, map[string]want{
			published:     exactly(1),
			keysPublished: exactly(2),
			ownSkipped:    exactly(1),
		}, map[string]want{
			received:     exactly(1),
			keysReceived: exactly(2),
		})

		bRecv, aOwn = b.Stats().Received, a.Stats().OwnSkipped
		p.step(t, "Clear on a", func() {
			if err := p.a.Clear(ctx); err != nil {
				t.Fatal(err)
			}
		}, func() bool {
			return b.Stats().Received > bRecv && a.Stats().OwnSkipped > aOwn
		}, map[string]want{
			published:  exactly(1),
			ownSkipped: exactly(1),
		}, map[string]want{
			received:                exactly(1),
			fullClears("namespace"): exactly(1),
		})

		raw := s.Client(t)
		aBad, bBad := a.Stats().Foreign+a.Stats().Malformed, b.Stats().Foreign+b.Stats().Malformed
		p.step(t, "foreign and malformed payloads", func() {
			// 0xB7 is the bus format's magic byte: the second payload
			// claims the format and ends after the version.
			for _, payload := range []string{"hello", "\xb7\x01"} {
				if err := raw.Publish(ctx, a.Channel(), payload).Err(); err != nil {
					t.Fatal(err)
				}
			}
		}, func() bool {
			return a.Stats().Foreign+a.Stats().Malformed == aBad+2 && b.Stats().Foreign+b.Stats().Malformed == bBad+2
		}, map[string]want{
			foreign:   exactly(1),
			malformed: exactly(1),
		}, map[string]want{
			foreign:   exactly(1),
			malformed: exactly(1),
		})
	})
}

// TestBusCollectorReconnect kills the pub/sub connections (a real server
// only): the bus subscribes again, clears every L1 on it, and counts the
// time it bypassed L1.
func TestBusCollectorReconnect(t *testing.T) {
	s := redistest.Real(t)
	c := newCache(t, s, nil)
	reg := register(t, metrics.NewBusCollector(c.Bus(), metrics.Options{}), metrics.NewCacheCollector(c, metrics.Options{}))
	before := scrape(t, reg)

	if n := s.KillPubSubClients(t); n < 1 {
		t.Fatalf("KillPubSubClients = %d, want at least 1", n)
	}
	eventually(t, "a reconnect", func() bool { return c.Bus().Stats().Reconnects > 0 })
	eventually(t, "usable again", c.Bus().Usable)

	after := scrape(t, reg)
	for _, id := range []string{reconnects, fullClears("reconnect"), l1Clears} {
		if after[id] < before[id]+1 {
			t.Errorf("%s went from %v to %v, want it to rise", id, before[id], after[id])
		}
	}
	if after[bypassSeconds] <= before[bypassSeconds] {
		t.Errorf("%s went from %v to %v, want it to rise", bypassSeconds, before[bypassSeconds], after[bypassSeconds])
	}
	if after[usable] != 1 {
		t.Errorf("%s = %v after the bus healed, want 1", usable, after[usable])
	}
}
