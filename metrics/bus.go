package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// BusSource is what a bus collector reads. *invalidation.Bus satisfies it;
// tiered.Cache.Bus returns the bus a cache is registered on.
type BusSource interface {
	Stats() invalidation.Stats
	DeliveryLag() invalidation.Histogram
}

// busSnapshot is what one Collect reads from a BusSource.
type busSnapshot struct {
	invalidation.Stats
	lag invalidation.Histogram
}

// busCollector exports one bus's counters. It is safe for concurrent use:
// every Collect takes one snapshot and keeps no state.
type busCollector struct {
	src BusSource
	t   table[busSnapshot]
}

var _ prometheus.Collector = (*busCollector)(nil)

// NewBusCollector returns a collector of b's invalidation metrics (the
// package comment lists them), named with o.Prefix. A bus is shared by
// every cache registered on it, so export it once, not once per cache; its
// series carry no cache label. To export two buses on one registry, wrap the registerer with
// [prometheus.WrapRegistererWith] and a label of your own.
//
// The collector reads b at each scrape and nothing in between. It is safe
// for concurrent use and may outlive b: a closed bus still reports its last
// counts.
func NewBusCollector(b BusSource, o Options) prometheus.Collector {
	const sub = "invalidation"
	type S = busSnapshot
	bl := builder[S]{prefix: o.prefix()}
	byReason := func(reason string, read func(*S) uint64) labelled[S] {
		return labelled[S]{labels: []string{reason}, read: read}
	}

	bl.counter(sub, "messages_published_total", "Invalidation messages this node encoded for publishing (Set, Delete, Clear).",
		func(s *S) uint64 { return s.Messages })
	bl.counter(sub, "keys_published_total", "Keys in the invalidation messages this node published.",
		func(s *S) uint64 { return s.MessageKeys })
	bl.counter(sub, "messages_received_total", "Other nodes' invalidation messages (delete or clear) applied.",
		func(s *S) uint64 { return s.Received })
	bl.counter(sub, "keys_received_total", "Keys in other nodes' delete messages.",
		func(s *S) uint64 { return s.ReceivedKeys })
	bl.counter(sub, "own_messages_skipped_total", "This node's own invalidation messages received back and skipped (the write's round trip succeeded).",
		func(s *S) uint64 { return s.OwnSkipped })
	bl.counter(sub, "own_messages_applied_total", "This node's own invalidation messages of writes whose round trip failed, applied when they came back.",
		func(s *S) uint64 { return s.OwnApplied })
	bl.counter(sub, "malformed_messages_total", "Payloads that claim the bus format but do not parse, ignored.",
		func(s *S) uint64 { return s.Malformed })
	bl.counter(sub, "foreign_messages_total", "Payloads of another format or version on the channel, ignored.",
		func(s *S) uint64 { return s.Foreign })
	bl.counter(sub, "sequence_gaps_total", "Messages from a peer found missing (each clears every L1 on the bus).",
		func(s *S) uint64 { return s.SequenceGaps })
	bl.counter(sub, "reconnects_total", "Subscriptions made again after the first.",
		func(s *S) uint64 { return s.Reconnects })
	bl.counter(sub, "subscribe_errors_total", "Failed attempts to subscribe again.",
		func(s *S) uint64 { return s.SubscribeErrors })
	bl.counterVec(sub, "full_clears_total",
		"Full L1 clears by reason: reconnect, gap (sequence gap), stale (liveness lost), namespace (a peer cleared a namespace).",
		[]string{"reason"},
		byReason("reconnect", func(s *S) uint64 { return s.FullClearsReconnect }),
		byReason("gap", func(s *S) uint64 { return s.FullClearsGap }),
		byReason("stale", func(s *S) uint64 { return s.FullClearsStale }),
		byReason("namespace", func(s *S) uint64 { return s.FullClearsNamespace }),
	)
	bl.add(bl.desc(sub, "bypass_seconds_total", "Time the bus could not prove its subscription alive, so every L1 on it was bypassed."),
		prometheus.CounterValue, nil, func(s *S) float64 { return time.Duration(s.BypassNanos).Seconds() })
	bl.gauge(sub, "usable", "1 if the bus has proven its subscription alive and L1 may be served, else 0.",
		func(s *S) float64 { return boolFloat(s.Usable) })
	bl.gauge(sub, "heartbeat_age_seconds", "Time since the newest own heartbeat heard back was sent (before the first: since the bus started).",
		func(s *S) float64 { return s.HeartbeatAge.Seconds() })
	bl.counter(sub, "heartbeats_sent_total", "Heartbeats published.",
		func(s *S) uint64 { return s.HeartbeatsSent })
	bl.counter(sub, "heartbeat_errors_total", "Heartbeats that failed to publish.",
		func(s *S) uint64 { return s.HeartbeatErrors })
	bl.counter(sub, "heartbeats_heard_total", "Own heartbeats received back.",
		func(s *S) uint64 { return s.HeartbeatsHeard })
	bl.counter(sub, "peer_heartbeats_total", "Other nodes' heartbeats heard on the shared channel (only nodes of older versions send them there).",
		func(s *S) uint64 { return s.PeerHeartbeats })
	bl.gauge(sub, "peers", "Other nodes tracked for sequence gaps.",
		func(s *S) float64 { return float64(s.Peers) })
	bl.gauge(sub, "registrations", "Caches (handlers) registered on the bus.",
		func(s *S) float64 { return float64(s.Registrations) })
	bl.histogram(sub, "delivery_lag_seconds",
		"Time from a message's send time on its sender to its receipt here, for peers' messages (clock skew included) and own heartbeats.",
		func(s *S) tiered.Histogram { return tiered.Histogram(s.lag) })

	return &busCollector{src: b, t: bl.t}
}

// Describe sends the descriptors of every metric the collector emits.
func (c *busCollector) Describe(ch chan<- *prometheus.Desc) { c.t.describe(ch) }

// Collect reads the bus once and sends every metric.
func (c *busCollector) Collect(ch chan<- prometheus.Metric) {
	s := busSnapshot{Stats: c.src.Stats(), lag: c.src.DeliveryLag()}
	c.t.collect(&s, ch)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
