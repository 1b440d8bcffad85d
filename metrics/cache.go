package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/tiered"
)

// CacheSource is what a cache collector reads. *tiered.Cache[V] satisfies
// it for any V.
type CacheSource interface {
	Stats() tiered.Stats
}

// l2LatencySource is a CacheSource that also reports its L2 round-trip
// latency per kind of call; the collector exports it when the source has it.
type l2LatencySource interface {
	L2Latency() map[string]tiered.Histogram
}

// cacheCollector exports one cache's counters. It is safe for concurrent
// use: every Collect takes one Stats snapshot and keeps no state.
type cacheCollector struct {
	src CacheSource
	t   table[tiered.Stats]
	l2  *prometheus.Desc // L2 latency, emitted only when src is an l2LatencySource
}

var _ prometheus.Collector = (*cacheCollector)(nil)

// NewCacheCollector returns a collector of c's requests per tier, L1, L2
// and load metrics (the package comment lists them), named with
// o.Prefix. Every series carries the const label cache: o.Cache, or else
// c.Stats().Namespace, read once, here. Bus metrics are not included:
// export them once per bus with [NewBusCollector]. The L2 latency
// histogram is exported only if c also has a method
// L2Latency() map[string]tiered.Histogram.
//
// The collector reads c.Stats() at each scrape and nothing in between, so
// it costs the cache nothing between scrapes. Register it on your own
// registry. Registering two collectors with the same cache label on one
// registry fails (two caches of one namespace: set o.Cache). The collector
// is safe for concurrent use and may outlive c: a closed cache still
// reports its last counts.
func NewCacheCollector(c CacheSource, o Options) prometheus.Collector {
	cache := o.Cache
	if cache == "" {
		cache = c.Stats().Namespace
	}
	b := builder[tiered.Stats]{prefix: o.prefix(), constLabels: prometheus.Labels{"cache": cache}}
	type S = tiered.Stats
	req := func(tier, result string, read func(*S) uint64) labelled[S] {
		return labelled[S]{labels: []string{tier, result}, read: read}
	}

	b.counterVec("", "requests_total",
		"Keys looked up, per tier and result, so that a sum over result is every key the tier was asked for. "+
			"tier=l1: hit, miss, bypass (L1 skipped while the bus cannot prove liveness). "+
			"tier=l2 (after an L1 miss): hit, miss, error (keys of failed round trips). tier=loader: hit (keys loaded with a value), miss (keys reported not found), error (keys of failed loader calls).",
		[]string{"tier", "result"},
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

	// L1.
	b.gauge("l1", "entries", "Entries in L1, including invalidated and expired ones not yet deleted and sets still buffered.",
		func(s *S) float64 { return float64(s.L1.Entries) })
	b.gauge("l1", "cost_bytes", "L1 cost in use, in bytes of encoded values.",
		func(s *S) float64 { return float64(s.L1.CostUsed) })
	b.gauge("l1", "max_cost_bytes", "L1 cost budget (Options.LocalMaxCost), in bytes of encoded values.",
		func(s *S) float64 { return float64(s.L1.MaxCost) })
	b.counter("l1", "sets_total", "Fills accepted into ristretto's buffer (it may still reject them).",
		func(s *S) uint64 { return s.L1.Sets })
	b.counter("l1", "sets_dropped_total", "Fills ristretto dropped at once because its set buffer was full.",
		func(s *S) uint64 { return s.L1.DroppedSets })
	b.counter("l1", "sets_rejected_total", "Accepted fills ristretto's admission policy turned away.",
		func(s *S) uint64 { return s.L1.Rejections })
	b.counter("l1", "stale_fills_total", "Fills not stored because an invalidation came after their stamp.",
		func(s *S) uint64 { return s.L1.StaleFills })
	b.counter("l1", "evictions_total", "Entries ristretto evicted to make room.",
		func(s *S) uint64 { return s.L1.Evictions })
	b.counter("l1", "stamp_rejections_total", "L1 reads that found an entry older than an invalidation or clear, served as a miss.",
		func(s *S) uint64 { return s.L1.StampRejections })
	b.counter("l1", "epoch_collisions_total", "Stamp rejections estimated to be caused by another key sharing the epoch slot.",
		func(s *S) uint64 { return s.L1.EpochCollisions })
	b.counter("l1", "expired_total", "L1 reads that found a current entry past its TTL.",
		func(s *S) uint64 { return s.L1.Expired })
	b.counter("l1", "invalidated_keys_total", "Keys invalidated in L1: by this node's writes, by other nodes' messages, and by refreshes that found them gone from L2.",
		func(s *S) uint64 { return s.L1.Invalidations })
	b.counter("l1", "clears_total", "Full L1 clears.",
		func(s *S) uint64 { return s.L1.Clears })
	b.counter("l1", "deletes_skipped_total", "Deletes not queued to ristretto because its queue was full (entries stay hidden by their stamps).",
		func(s *S) uint64 { return s.L1.DeletesSkipped })

	// L2.
	b.counter("l2", "round_trips_total", "Requests sent to Redis; a pipeline or MULTI/EXEC counts once.",
		func(s *S) uint64 { return s.L2.RoundTrips })
	b.counter("l2", "round_trip_errors_total", "Redis round trips that failed, timeouts included; a miss is not an error.",
		func(s *S) uint64 { return s.L2.Errors })
	b.counter("l2", "round_trip_timeouts_total", "Redis round trips that failed by deadline or network timeout.",
		func(s *S) uint64 { return s.L2.Timeouts })
	b.counter("l2", "decode_errors_total", "L2 entries that did not decode (garbage, unknown header, other codec, corrupt payload), read as misses.",
		func(s *S) uint64 { return s.L2.DecodeErrors })
	b.counter("l2", "read_bytes_total", "Bytes of L2 entries read.",
		func(s *S) uint64 { return s.L2.BytesRead })
	b.counter("l2", "written_bytes_total", "Bytes of L2 entries and invalidation messages written.",
		func(s *S) uint64 { return s.L2.BytesWritten })

	// Loads.
	b.counter("", "loads_total", "Loader calls; a batch loader call counts once.",
		func(s *S) uint64 { return s.Loads })
	b.counter("", "load_errors_total", "Loader calls that failed (an error, a panic, or LoadTimeout); a batch loader call counts once.",
		func(s *S) uint64 { return s.LoadErrors })
	b.counter("", "load_panics_total", "Loader calls that panicked (also counted as loader errors).",
		func(s *S) uint64 { return s.Panics })
	b.counter("", "load_dedupes_total", "Callers that joined a load of the same key already running in this process.",
		func(s *S) uint64 { return s.Dedupes })
	b.counter("", "lease_grants_total", "Keys this node took the L2 lease on, and so loads for the whole cluster.",
		func(s *S) uint64 { return s.L2.LeasesGranted })
	b.counter("", "lease_waits_total", "Keys found leased by another node, whose load this node then waited for.",
		func(s *S) uint64 { return s.LeaseWaits })
	b.counter("", "lease_wait_hits_total", "Keys answered by another node's load after waiting on its lease: cross-node dedupes.",
		func(s *S) uint64 { return s.LeaseWaitHits })
	b.counter("", "lease_fallbacks_total", "Keys loaded here without filling L2 because another node's lease outlived LeaseWait.",
		func(s *S) uint64 { return s.LeaseFallbacks })
	b.counter("", "lease_wakeups_total", "Waits on another node's lease cut short by the news that it filled the key.",
		func(s *S) uint64 { return s.LeaseWakeups })
	b.counter("", "fills_refused_total", "Loaded values not stored because a write killed the lease during the load.",
		func(s *S) uint64 { return s.L2.FillsRefused })
	b.counter("", "oversize_values_total", "Loaded values too large to cache, served uncached.",
		func(s *S) uint64 { return s.Oversize })
	b.histogram("", "load_duration_seconds", "Loader call latency.",
		func(s *S) tiered.Histogram { return s.LoadLatency })

	// Writes and invalidations received for this namespace.
	b.counter("", "writes_total", "Set, SetMany and Delete round trips that succeeded.",
		func(s *S) uint64 { return s.Writes })
	b.counter("", "write_errors_total", "Set, SetMany and Delete round trips that failed.",
		func(s *S) uint64 { return s.WriteErrors })
	b.counter("", "confirmed_writes_total", "Confirmed writes (ConfirmWrites, Confirm) that returned confirmed.",
		func(s *S) uint64 { return s.ConfirmedWrites })
	b.counter("", "confirm_timeouts_total", "Confirmed writes that waited out MaxStaleness because a node did not acknowledge.",
		func(s *S) uint64 { return s.ConfirmTimeouts })
	b.counter("l2", "abandoned_calls_total", "Redis calls stopped waiting for at RedisTimeout, on a client without ContextTimeoutEnabled.",
		func(s *S) uint64 { return s.L2.Abandoned })
	b.counter("", "peer_invalidated_keys_total", "Keys of this namespace invalidated by other nodes' messages.",
		func(s *S) uint64 { return s.Invalidations })

	// Outage state.
	b.gaugeVec("", "state", "1 for the state the cache is in (connected, degraded: breaker open, healing: bus not yet proven), 0 for the others.",
		[]string{"state"},
		stateIs(tiered.StateConnected), stateIs(tiered.StateDegraded), stateIs(tiered.StateHealing))
	b.counter("l2", "breaker_opens_total", "Times the circuit breaker around Redis opened after consecutive failures.",
		func(s *S) uint64 { return s.L2.BreakerOpens })
	b.counter("", "stale_served_total", "L1 reads answered with values of unproven freshness by StaleIfError while Redis was unreachable.",
		func(s *S) uint64 { return s.StaleServed })
	b.counter("l2", "breaker_rejected_total", "Redis calls refused at once, never sent, while the breaker was open.",
		func(s *S) uint64 { return s.L2.BreakerRejected })

	// Refresh-ahead and stale-while-revalidate.
	b.counter("", "refreshes_total", "Background refreshes started here: values due under RefreshAhead, expired values served under StaleWhileRevalidate.",
		func(s *S) uint64 { return s.Refreshes })
	b.counter("", "refreshes_elsewhere_total", "Refreshes that found another node refreshing the key, or done with it.",
		func(s *S) uint64 { return s.RefreshesElsewhere })
	b.counter("", "refreshes_refused_total", "Refreshed values not stored because a write of the key came first.",
		func(s *S) uint64 { return s.RefreshesRefused })
	b.counter("", "refresh_failures_total", "Refreshes whose loader failed; the current value is kept until it expires.",
		func(s *S) uint64 { return s.RefreshFailures })
	b.counter("", "revalidate_served_total", "GetOrLoad calls answered with an expired value under StaleWhileRevalidate.",
		func(s *S) uint64 { return s.RevalidateServed })

	return &cacheCollector{
		src: c,
		t:   b.t,
		l2:  b.desc("l2", "round_trip_duration_seconds", "Redis round-trip latency per kind of call (op).", "op"),
	}
}

// Describe sends the descriptors of every metric the collector may emit.
func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	c.t.describe(ch)
	ch <- c.l2
}

// Collect reads the cache's Stats once and sends every metric.
func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	c.t.collect(&s, ch)
	if ls, ok := c.src.(l2LatencySource); ok {
		lat := ls.L2Latency()
		for _, op := range slices.Sorted(maps.Keys(lat)) {
			ch <- constHistogram(c.l2, lat[op], op)
		}
	}
}

// stateIs is the series of the state gauge for st.
func stateIs(st tiered.State) labelled[tiered.Stats] {
	return labelled[tiered.Stats]{labels: []string{string(st)}, read: func(s *tiered.Stats) uint64 {
		if s.State == st {
			return 1
		}
		return 0
	}}
}
