// Package metrics exports tiercache's counters as Prometheus collectors that
// read them at scrape time.
//
// The caches and buses count with plain atomics as they run; a collector
// reads them only when it is scraped, so an L1 hit pays no clock read and no
// label lookup for metrics. Register the collectors on a registry of your
// own; this package never touches the default registry:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(
//		metrics.NewCacheCollector(products, metrics.Options{}),     // one per cache
//		metrics.NewBusCollector(products.Bus(), metrics.Options{}), // one per bus, shared by its caches
//	)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Names start with [Options].Prefix, tiercache by default, as listed
// below. Labels are bounded: cache (a const label, the cache's
// Options.Namespace unless [Options].Cache says otherwise), tier, result,
// op and reason, each with the fixed values listed below. No metric is
// labelled by key or error text. The label is cache, not namespace,
// because Kubernetes service discovery gives every target a namespace
// label (the pod's), which would rename ours to exported_namespace.
//
// Each counter counts one thing, so that a sum over its labels means
// something: tiercache_requests_total counts keys in every tier and result
// (a batch of 10 keys that misses L1 is 10 L1 misses); calls, such as
// loader calls and round trips, have counters of their own.
//
// Breaking change: before this version the const label was namespace, the
// prefix was fixed, tiercache_requests_total{tier="l2",result="error"} and
// {tier="loader",result="error"} counted calls, and NewCacheCollector and
// NewBusCollector took no Options. Rewrite queries that filter on
// namespace to cache; failed loader calls are now
// tiercache_load_errors_total.
//
// # Cache metrics
//
// [NewCacheCollector] exports, each with the label cache:
//
//	tiercache_requests_total{tier,result}          keys looked up: tier="l1" result=hit|miss|bypass,
//	                                               tier="l2" result=hit|miss|error (after an L1 miss),
//	                                               tier="loader" result=hit (loaded)|miss (not found)|error (the call failed)
//	tiercache_l1_entries                           gauge: entries held by ristretto
//	tiercache_l1_cost_bytes                        gauge: cost in use (bytes of encoded values)
//	tiercache_l1_max_cost_bytes                    gauge: Options.LocalMaxCost
//	tiercache_l1_sets_total                        fills accepted into ristretto's buffer
//	tiercache_l1_sets_dropped_total                fills dropped because that buffer was full
//	tiercache_l1_sets_rejected_total               accepted fills refused by ristretto's admission policy
//	tiercache_l1_stale_fills_total                 fills not stored: an invalidation came after their stamp
//	tiercache_l1_evictions_total                   entries evicted to make room
//	tiercache_l1_stamp_rejections_total            reads of an entry older than an invalidation (a miss)
//	tiercache_l1_epoch_collisions_total            stamp rejections likely caused by another key's invalidation
//	tiercache_l1_expired_total                     reads of an entry past its TTL (a miss)
//	tiercache_l1_invalidated_keys_total            keys invalidated in L1 (own writes, peers' messages, refreshes finding them gone)
//	tiercache_l1_clears_total                      full L1 clears
//	tiercache_l1_deletes_skipped_total             deletes not queued to ristretto (queue full)
//	tiercache_l2_round_trips_total                 Redis round trips (a pipeline counts once)
//	tiercache_l2_round_trip_errors_total           failed round trips, timeouts included
//	tiercache_l2_round_trip_timeouts_total         round trips failed by timeout
//	tiercache_l2_round_trip_duration_seconds{op}   histogram: round-trip latency per kind of call
//	tiercache_l2_decode_errors_total               L2 entries that did not decode (read as misses)
//	tiercache_l2_read_bytes_total                  bytes of L2 entries read
//	tiercache_l2_written_bytes_total               bytes of L2 entries and invalidation messages written
//	tiercache_loads_total                          loader calls (a batch call counts once)
//	tiercache_load_errors_total                    loader calls that failed
//	tiercache_load_duration_seconds                histogram: loader latency
//	tiercache_load_panics_total                    loader calls that panicked
//	tiercache_load_dedupes_total                   callers that joined a load running in this process
//	tiercache_lease_grants_total                   keys this node took the cluster-wide lease on
//	tiercache_lease_waits_total                    keys found leased by another node, waited for
//	tiercache_lease_wait_hits_total                keys answered by another node's load (cross-node dedupes)
//	tiercache_lease_fallbacks_total                keys loaded without filling L2 after LeaseWait ran out
//	tiercache_lease_wakeups_total                  waits on another node's lease cut short by its fill's news
//	tiercache_fills_refused_total                  loaded values not stored: a write killed the lease
//	tiercache_oversize_values_total                loaded values too large to cache
//	tiercache_writes_total                         successful Set, SetMany and Delete round trips
//	tiercache_write_errors_total                   failed ones
//	tiercache_confirmed_writes_total               confirmed writes that returned confirmed
//	tiercache_confirm_timeouts_total               confirmed writes that waited out MaxStaleness for a silent node
//	tiercache_l2_abandoned_calls_total             Redis calls abandoned at RedisTimeout (client without ContextTimeoutEnabled)
//	tiercache_peer_invalidated_keys_total          keys of the namespace invalidated by peers' messages
//	tiercache_state{state}                         1 for the current state: connected, degraded, healing
//	tiercache_l2_breaker_opens_total               times the circuit breaker around Redis opened
//	tiercache_l2_breaker_rejected_total            Redis calls refused at once while it was open
//	tiercache_stale_served_total                   L1 reads served by StaleIfError during an outage
//	tiercache_refreshes_total                      background refreshes started (RefreshAhead, StaleWhileRevalidate)
//	tiercache_refreshes_elsewhere_total            refreshes another node was doing, or had done
//	tiercache_refreshes_refused_total              refreshed values not stored: a write came first
//	tiercache_refresh_failures_total               refreshes whose loader failed
//	tiercache_revalidate_served_total              expired values served under StaleWhileRevalidate
//
// The L2 latency histogram (op is one of get, get_many, write, lease, fill,
// release) is exported only when the source also has a method
// L2Latency() map[string]tiered.Histogram, as *tiered.Cache has.
//
// # Bus metrics
//
// [NewBusCollector] exports, without a cache label (a bus serves every
// cache in the process):
//
//	tiercache_invalidation_messages_published_total   messages this node published
//	tiercache_invalidation_keys_published_total       keys in them
//	tiercache_invalidation_messages_received_total    peers' messages applied
//	tiercache_invalidation_keys_received_total        keys in peers' delete messages
//	tiercache_invalidation_own_messages_skipped_total own messages received back and skipped
//	tiercache_invalidation_own_messages_applied_total own messages of failed writes, applied when back
//	tiercache_invalidation_malformed_messages_total   payloads in our format that do not parse
//	tiercache_invalidation_foreign_messages_total     payloads of another format or version
//	tiercache_invalidation_sequence_gaps_total        peers' messages found missing
//	tiercache_invalidation_reconnects_total           subscriptions made again
//	tiercache_invalidation_subscribe_errors_total     failed attempts to subscribe again
//	tiercache_invalidation_full_clears_total{reason}  full clears of every L1: reason=reconnect|gap|stale|namespace
//	tiercache_invalidation_bypass_seconds_total       time L1 was bypassed for lack of proven liveness
//	tiercache_invalidation_usable                     gauge: 1 while L1 may be served
//	tiercache_invalidation_heartbeat_age_seconds      gauge: age of the newest own heartbeat heard back
//	tiercache_invalidation_heartbeats_sent_total      heartbeats published
//	tiercache_invalidation_heartbeat_errors_total     heartbeats that failed to publish
//	tiercache_invalidation_heartbeats_heard_total     own heartbeats heard back
//	tiercache_invalidation_peer_heartbeats_total      peers' heartbeats received
//	tiercache_invalidation_peers                      gauge: peers tracked
//	tiercache_invalidation_registrations              gauge: caches registered on the bus
//	tiercache_invalidation_delivery_lag_seconds       histogram: sender's send time to receipt
//
// dashboard.json in this directory is a Grafana dashboard over these
// metrics; import it and pick a Prometheus data source.
package metrics
