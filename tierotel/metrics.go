package tierotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
)

// CacheSource is what [RegisterCache] reads. *tiered.Cache[V] satisfies it
// for any V.
type CacheSource interface {
	Stats() tiered.Stats
}

// BusSource is what [RegisterBus] reads. *invalidation.Bus satisfies it;
// tiered.Cache.Bus returns the bus a cache is registered on.
type BusSource interface {
	Stats() invalidation.Stats
}

// RegisterCache registers asynchronous instruments on o.MeterProvider that
// read c.Stats() once per collection and report the cache's requests per
// tier, L1, L2, load, write, state and refresh counters (the Prometheus
// collector's set; see the package comment), each with the attribute
// cache, c's Namespace. It costs the cache nothing between collections.
// Unregister the returned registration to stop; it is safe for concurrent
// use. Two caches of one namespace give series with the same attributes:
// register one of them.
func RegisterCache(c CacheSource, o Options) (metric.Registration, error) {
	o = o.withDefaults()
	t := table[tiered.Stats]{prefix: o.Prefix, base: []attribute.KeyValue{attribute.String("cache", c.Stats().Namespace)}}
	type S = tiered.Stats
	req := func(tier, result string, read func(*S) uint64) series[S] {
		return series[S]{attrs: []attribute.KeyValue{attribute.String("tier", tier), attribute.String("result", result)}, read: u(read)}
	}
	t.counter("requests", "{key}", "Keys looked up, per tier and result.",
		req("l1", "hit", func(s *S) uint64 { return s.L1.Hits }),
		req("l1", "miss", func(s *S) uint64 { return s.L1.Misses }),
		req("l1", "bypass", func(s *S) uint64 { return s.L1Bypassed }),
		req("l2", "hit", func(s *S) uint64 { return s.L2Hits }),
		req("l2", "miss", func(s *S) uint64 { return s.L2Misses }),
		req("l2", "error", func(s *S) uint64 { return s.L2ErrorKeys }),
		req("loader", "hit", func(s *S) uint64 { return s.LoadFound }),
		req("loader", "miss", func(s *S) uint64 { return s.LoadNotFound }),
		req("loader", "error", func(s *S) uint64 { return s.LoadErrorKeys }),
	)
	one := func(read func(*S) uint64) series[S] { return series[S]{read: u(read)} }
	t.gauge("l1.entries", "{entry}", "Entries in L1, including invalidated and expired ones not yet deleted.",
		one(func(s *S) uint64 { return uint64(s.L1.Entries) }))
	t.gauge("l1.cost", "By", "L1 cost in use, in bytes of encoded values.",
		one(func(s *S) uint64 { return uint64(s.L1.CostUsed) }))
	t.gauge("l1.max_cost", "By", "L1 cost budget (Options.LocalMaxCost).",
		one(func(s *S) uint64 { return uint64(s.L1.MaxCost) }))
	for _, c := range []struct {
		name, unit, desc string
		read             func(*S) uint64
	}{
		{"l1.sets", "{set}", "Fills accepted into ristretto's buffer.", func(s *S) uint64 { return s.L1.Sets }},
		{"l1.sets_dropped", "{set}", "Fills dropped because ristretto's set buffer was full.", func(s *S) uint64 { return s.L1.DroppedSets }},
		{"l1.sets_rejected", "{set}", "Accepted fills ristretto's admission policy turned away.", func(s *S) uint64 { return s.L1.Rejections }},
		{"l1.stale_fills", "{fill}", "Fills not stored because an invalidation came after their stamp.", func(s *S) uint64 { return s.L1.StaleFills }},
		{"l1.evictions", "{entry}", "Entries evicted to make room.", func(s *S) uint64 { return s.L1.Evictions }},
		{"l1.stamp_rejections", "{read}", "L1 reads of an entry older than an invalidation, served as a miss.", func(s *S) uint64 { return s.L1.StampRejections }},
		{"l1.epoch_collisions", "{read}", "Stamp rejections likely caused by another key's invalidation.", func(s *S) uint64 { return s.L1.EpochCollisions }},
		{"l1.expired", "{read}", "L1 reads of an entry past its TTL.", func(s *S) uint64 { return s.L1.Expired }},
		{"l1.invalidated_keys", "{key}", "Keys invalidated in L1.", func(s *S) uint64 { return s.L1.Invalidations }},
		{"l1.clears", "{clear}", "Full L1 clears.", func(s *S) uint64 { return s.L1.Clears }},
		{"l1.deletes_skipped", "{delete}", "Deletes not queued to ristretto because its queue was full.", func(s *S) uint64 { return s.L1.DeletesSkipped }},
		{"l2.round_trips", "{round_trip}", "Redis round trips; a pipeline counts once.", func(s *S) uint64 { return s.L2.RoundTrips }},
		{"l2.round_trip_errors", "{round_trip}", "Failed Redis round trips, timeouts included.", func(s *S) uint64 { return s.L2.Errors }},
		{"l2.round_trip_timeouts", "{round_trip}", "Redis round trips failed by timeout.", func(s *S) uint64 { return s.L2.Timeouts }},
		{"l2.decode_errors", "{entry}", "L2 entries that did not decode, read as misses.", func(s *S) uint64 { return s.L2.DecodeErrors }},
		{"l2.read", "By", "Bytes of L2 entries read.", func(s *S) uint64 { return s.L2.BytesRead }},
		{"l2.written", "By", "Bytes of L2 entries and invalidation messages written.", func(s *S) uint64 { return s.L2.BytesWritten }},
		{"l2.breaker_opens", "{open}", "Times the circuit breaker around Redis opened.", func(s *S) uint64 { return s.L2.BreakerOpens }},
		{"l2.breaker_rejected", "{call}", "Redis calls refused at once while the breaker was open.", func(s *S) uint64 { return s.L2.BreakerRejected }},
		{"l2.abandoned_calls", "{call}", "Redis calls abandoned at RedisTimeout on a client without ContextTimeoutEnabled.", func(s *S) uint64 { return s.L2.Abandoned }},
		{"loads", "{call}", "Loader calls; a batch call counts once.", func(s *S) uint64 { return s.Loads }},
		{"load_errors", "{call}", "Loader calls that failed.", func(s *S) uint64 { return s.LoadErrors }},
		{"load_panics", "{call}", "Loader calls that panicked.", func(s *S) uint64 { return s.Panics }},
		{"load_dedupes", "{call}", "Callers that joined a load running in this process.", func(s *S) uint64 { return s.Dedupes }},
		{"lease_grants", "{key}", "Keys this node took the cluster-wide lease on.", func(s *S) uint64 { return s.L2.LeasesGranted }},
		{"lease_waits", "{key}", "Keys found leased by another node, waited for.", func(s *S) uint64 { return s.LeaseWaits }},
		{"lease_wait_hits", "{key}", "Keys answered by another node's load.", func(s *S) uint64 { return s.LeaseWaitHits }},
		{"lease_fallbacks", "{key}", "Keys loaded without filling L2 after LeaseWait ran out.", func(s *S) uint64 { return s.LeaseFallbacks }},
		{"lease_wakeups", "{wait}", "Waits on another node's lease cut short by its fill's news.", func(s *S) uint64 { return s.LeaseWakeups }},
		{"fills_refused", "{value}", "Loaded values not stored: a write killed the lease.", func(s *S) uint64 { return s.L2.FillsRefused }},
		{"oversize_values", "{value}", "Loaded values too large to cache.", func(s *S) uint64 { return s.Oversize }},
		{"writes", "{round_trip}", "Successful Set, SetMany and Delete round trips.", func(s *S) uint64 { return s.Writes }},
		{"write_errors", "{round_trip}", "Failed Set, SetMany and Delete round trips.", func(s *S) uint64 { return s.WriteErrors }},
		{"confirmed_writes", "{write}", "Confirmed writes that returned confirmed.", func(s *S) uint64 { return s.ConfirmedWrites }},
		{"confirm_timeouts", "{write}", "Confirmed writes that waited out MaxStaleness for a silent node.", func(s *S) uint64 { return s.ConfirmTimeouts }},
		{"peer_invalidated_keys", "{key}", "Keys invalidated by other nodes' messages.", func(s *S) uint64 { return s.Invalidations }},
		{"stale_served", "{read}", "L1 reads served by StaleIfError during an outage.", func(s *S) uint64 { return s.StaleServed }},
		{"refreshes", "{refresh}", "Background refreshes started.", func(s *S) uint64 { return s.Refreshes }},
		{"refreshes_elsewhere", "{refresh}", "Refreshes another node was doing, or had done.", func(s *S) uint64 { return s.RefreshesElsewhere }},
		{"refreshes_refused", "{refresh}", "Refreshed values not stored: a write came first.", func(s *S) uint64 { return s.RefreshesRefused }},
		{"refresh_failures", "{refresh}", "Refreshes whose loader failed.", func(s *S) uint64 { return s.RefreshFailures }},
		{"revalidate_served", "{read}", "Expired values served under StaleWhileRevalidate.", func(s *S) uint64 { return s.RevalidateServed }},
	} {
		t.counter(c.name, c.unit, c.desc, one(c.read))
	}
	state := func(st tiered.State) series[S] {
		return series[S]{attrs: []attribute.KeyValue{attribute.String("state", string(st))}, read: func(s *S) float64 {
			if s.State == st {
				return 1
			}
			return 0
		}}
	}
	t.gauge("state", "", "1 for the state the cache is in, 0 for the others.",
		state(tiered.StateConnected), state(tiered.StateDegraded), state(tiered.StateHealing))
	return t.register(o.MeterProvider.Meter(scope), func(s *S) { *s = c.Stats() })
}

// RegisterBus registers asynchronous instruments on o.MeterProvider that
// read b.Stats() once per collection: the Prometheus bus collector's set
// but the delivery lag histogram (see the package comment). A bus is
// shared by its caches, so register it once; its series carry no cache
// attribute.
func RegisterBus(b BusSource, o Options) (metric.Registration, error) {
	o = o.withDefaults()
	t := table[invalidation.Stats]{prefix: o.Prefix + ".invalidation"}
	type S = invalidation.Stats
	one := func(read func(*S) uint64) series[S] { return series[S]{read: u(read)} }
	for _, c := range []struct {
		name, unit, desc string
		read             func(*S) uint64
	}{
		{"messages_published", "{message}", "Invalidation messages this node published.", func(s *S) uint64 { return s.Messages }},
		{"keys_published", "{key}", "Keys in them.", func(s *S) uint64 { return s.MessageKeys }},
		{"messages_received", "{message}", "Peers' messages applied.", func(s *S) uint64 { return s.Received }},
		{"keys_received", "{key}", "Keys in peers' delete messages.", func(s *S) uint64 { return s.ReceivedKeys }},
		{"own_messages_skipped", "{message}", "Own messages received back and skipped.", func(s *S) uint64 { return s.OwnSkipped }},
		{"own_messages_applied", "{message}", "Own messages of failed writes, applied when back.", func(s *S) uint64 { return s.OwnApplied }},
		{"malformed_messages", "{message}", "Payloads in the bus format that do not parse.", func(s *S) uint64 { return s.Malformed }},
		{"foreign_messages", "{message}", "Payloads of another format or version.", func(s *S) uint64 { return s.Foreign }},
		{"sequence_gaps", "{message}", "Peers' messages found missing.", func(s *S) uint64 { return s.SequenceGaps }},
		{"reconnects", "{subscription}", "Subscriptions made again.", func(s *S) uint64 { return s.Reconnects }},
		{"subscribe_errors", "{attempt}", "Failed attempts to subscribe again.", func(s *S) uint64 { return s.SubscribeErrors }},
		{"heartbeats_sent", "{heartbeat}", "Heartbeats published.", func(s *S) uint64 { return s.HeartbeatsSent }},
		{"heartbeat_errors", "{heartbeat}", "Heartbeats that failed to publish.", func(s *S) uint64 { return s.HeartbeatErrors }},
		{"heartbeats_heard", "{heartbeat}", "Own heartbeats heard back.", func(s *S) uint64 { return s.HeartbeatsHeard }},
		{"peer_heartbeats", "{heartbeat}", "Peers' heartbeats received.", func(s *S) uint64 { return s.PeerHeartbeats }},
	} {
		t.counter(c.name, c.unit, c.desc, one(c.read))
	}
	reason := func(r string, read func(*S) uint64) series[S] {
		return series[S]{attrs: []attribute.KeyValue{attribute.String("reason", r)}, read: u(read)}
	}
	t.counter("full_clears", "{clear}", "Full clears of every L1, by reason.",
		reason("reconnect", func(s *S) uint64 { return s.FullClearsReconnect }),
		reason("gap", func(s *S) uint64 { return s.FullClearsGap }),
		reason("stale", func(s *S) uint64 { return s.FullClearsStale }),
		reason("namespace", func(s *S) uint64 { return s.FullClearsNamespace }))
	t.counter("bypass", "s", "Time L1 was bypassed for lack of proven liveness.",
		series[S]{read: func(s *S) float64 { return time.Duration(s.BypassNanos).Seconds() }})
	t.gauge("usable", "", "1 while L1 may be served.", series[S]{read: func(s *S) float64 {
		if s.Usable {
			return 1
		}
		return 0
	}})
	t.gauge("heartbeat_age", "s", "Age of the newest own heartbeat heard back.",
		series[S]{read: func(s *S) float64 { return s.HeartbeatAge.Seconds() }})
	t.gauge("peers", "{peer}", "Peers tracked.", one(func(s *S) uint64 { return uint64(s.Peers) }))
	t.gauge("registrations", "{cache}", "Caches registered on the bus.", one(func(s *S) uint64 { return uint64(s.Registrations) }))
	return t.register(o.MeterProvider.Meter(scope), func(s *S) { *s = b.Stats() })
}

// u adapts a counter read to the float64 every instrument here reports.
func u[S any](read func(*S) uint64) func(*S) float64 {
	return func(s *S) float64 { return float64(read(s)) }
}

// series is one attribute set of an instrument and how to read its value
// from a snapshot S.
type series[S any] struct {
	attrs []attribute.KeyValue
	read  func(*S) float64
}

// family is one instrument and its series.
type family[S any] struct {
	name, unit, desc string
	counter          bool
	series           []series[S]
}

// table lists every instrument a registration reports, under a name prefix
// and attributes every series carries.
type table[S any] struct {
	prefix   string
	base     []attribute.KeyValue
	families []family[S]
}

func (t *table[S]) counter(name, unit, desc string, ss ...series[S]) {
	t.families = append(t.families, family[S]{name: name, unit: unit, desc: desc, counter: true, series: ss})
}

func (t *table[S]) gauge(name, unit, desc string, ss ...series[S]) {
	t.families = append(t.families, family[S]{name: name, unit: unit, desc: desc, series: ss})
}

// register makes t's instruments and one callback that takes a snapshot
// with snap and observes every series from it.
func (t *table[S]) register(m metric.Meter, snap func(*S)) (metric.Registration, error) {
	type obs struct {
		inst metric.Float64Observable
		opt  metric.ObserveOption
		read func(*S) float64
	}
	var all []obs
	var insts []metric.Observable
	for _, f := range t.families {
		name := t.prefix + "." + f.name
		var inst metric.Float64Observable
		var err error
		if f.counter {
			inst, err = m.Float64ObservableCounter(name, metric.WithUnit(f.unit), metric.WithDescription(f.desc))
		} else {
			inst, err = m.Float64ObservableGauge(name, metric.WithUnit(f.unit), metric.WithDescription(f.desc))
		}
		if err != nil {
			return nil, err
		}
		insts = append(insts, inst)
		for _, s := range f.series {
			set := attribute.NewSet(append(append([]attribute.KeyValue{}, t.base...), s.attrs...)...)
			all = append(all, obs{inst: inst, opt: metric.WithAttributeSet(set), read: s.read})
		}
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var s S
		snap(&s)
		for _, ob := range all {
			o.ObserveFloat64(ob.inst, ob.read(&s), ob.opt)
		}
		return nil
	}, insts...)
}
