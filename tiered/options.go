package tiered

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/remote"
)

// Codec turns values into bytes for L2. [remote.JSON] is the default;
// [remote.Msgpack] is the compact alternative.
type Codec = remote.Codec

// Options configures a [Cache]. It is passed by value: New never changes the
// caller's copy. A zero field means its default; Redis and Namespace are
// required.
//
// [Options.String] prints the effective value of every knob, one per line,
// in this order; for a zero Options it prints the first two columns here
// (a test compares them):
//
//	Redis=nil                     required: the L2 client
//	Namespace=""                  required: L2 key prefix and invalidation scope
//	Bus=own                       "shared" when Options.Bus is set
//	TTL=10m                       L2 lifetime of a value (jittered down by up to 10%)
//	LocalTTL=1m                   L1 lifetime, capped by TTL and by the L2 TTL left
//	LocalMaxCost=64MiB            bytes of encoded values in L1
//	NegativeTTL=10s               lifetime of a cached "not found"
//	DisableNegativeCache=false
//	LoadTimeout=10s               bound on one shared load, lease waits included
//	LeaseTTL=10s                  lifetime of a lease nobody fills
//	LeaseWait=5s                  LoadTimeout/2: wait for another node's load
//	MaxStaleness=2s               staleness bound (own Bus only)
//	HeartbeatInterval=500ms       MaxStaleness/4: bus heartbeat (own Bus only)
//	Codec=remote.JSON
//	Logger=discard                "set" when Options.Logger is set
//	Tracer=nil                    "set" when Options.Tracer is set
//	RedisTimeout=250ms            bound on each Redis round trip
//	MaxKeySize=1KiB
//	MaxValueSize=1MiB             encoded
//	CompressThreshold=1KiB        encoded size from which values are compressed
//	DisableCompression=false
//	DisableJitter=false
//	BreakerThreshold=3            consecutive Redis failures that open the breaker
//	BreakerMinOpen=100ms          first wait before a probe (doubles per failed probe)
//	BreakerMaxOpen=1s             longest wait between probes
//	DisableBreaker=false
//	MaxConcurrentLoads=0          no bound on loader calls at once
//	StaleIfError=0s               off: L1 serves nothing unproven during an outage
//	RefreshAhead=0s               off: values expire, and the next read loads
//	StaleWhileRevalidate=0s       off: an expired value is never served
//	WaitReplicas=0                off: writes do not wait for replicas
//	ConfirmWrites=false           off: writes return once Redis has them
type Options struct {
	// Redis is the L2 client: *redis.Client, *redis.ClusterClient or a
	// Sentinel-backed client. Required. The cache never closes it. A
	// Cluster client that reads replicas is supported (fills then read
	// the master with GETEX); a failover client with ReplicaOnly is not
	// (see the package doc).
	Redis redis.UniversalClient
	// Namespace prefixes every L2 key ("ns:key") and scopes invalidations:
	// caches of one Namespace share their values, in L2 and across nodes.
	// Required. It must not contain ':', so that no namespace's keys can
	// be mistaken for another's (key "c" of namespace "a:b" and key "b:c"
	// of namespace "a" would both be "a:b:c"), nor '{' or '}', so that a
	// Redis Cluster hash tag in a key ("user:{42}:cart") is the one that
	// picks the key's slot. Keys themselves may contain anything.
	Namespace string
	// Bus is a shared invalidation bus (one per process is enough for every
	// cache, several of one namespace included: a write through one drops
	// the keys from the others at once). It must subscribe to the same Redis deployment as Redis, or
	// it never hears this cache's writes. The cache registers on it but
	// never closes it. When nil, the
	// cache makes a bus of its own from Redis, MaxStaleness and
	// HeartbeatInterval, and closes it in Close. Default: nil.
	Bus *invalidation.Bus
	// TTL is how long a value lives in L2. Default: 10m.
	TTL time.Duration
	// LocalTTL is how long a value lives in L1; it must not exceed TTL.
	// Default: 1m, or TTL when TTL is shorter.
	LocalTTL time.Duration
	// LocalMaxCost is the L1 budget in bytes of encoded values. Default: 64 MiB.
	LocalMaxCost int64
	// NegativeTTL is how long a loader's ErrNotFound is cached, in both tiers.
	// Default: 10s.
	NegativeTTL time.Duration
	// DisableNegativeCache turns negative caching off. Default: false.
	DisableNegativeCache bool
	// LoadTimeout bounds one shared load: the lease round trips, any wait
	// for another node's load (LeaseWait), the loader and the fill.
	// Default: 10s.
	LoadTimeout time.Duration
	// LeaseTTL is how long a lease marker lives in L2 if its holder never
	// fills or releases it (a crashed node). Default: 10s.
	LeaseTTL time.Duration
	// LeaseWait is how long a load waits for a value another node holds
	// the lease on, and is loading, before it calls its own loader (and
	// does not fill L2). A load slower than LeaseWait is therefore loaded
	// once by the holder and once more by every node that waited on it
	// ([Stats].LeaseFallbacks counts those keys): "one load cluster-wide"
	// holds for loaders faster than LeaseWait. The wait is part of the
	// waiter's own LoadTimeout, so a longer wait leaves less time for its
	// own load when the holder never answers (it crashed: its lease then
	// lives LeaseTTL). The default splits LoadTimeout in two: any loader up
	// to half of it runs once cluster-wide, and a waiter whose holder
	// vanished still has the other half to load. A LeaseWait of at least
	// LoadTimeout never loads twice: such a waiter times out instead.
	// Default: LoadTimeout/2 (5s).
	LeaseWait time.Duration
	// MaxStaleness bounds how long any node may serve a value from L1 after
	// a write that replaced it returned. Used only for a cache's own bus.
	// Default: 2s.
	MaxStaleness time.Duration
	// HeartbeatInterval is how often the bus proves its subscription; it
	// must be under MaxStaleness/2. Used only for a cache's own bus.
	// Default: MaxStaleness/4 (500ms).
	HeartbeatInterval time.Duration
	// Codec encodes values for L2. Default: remote.JSON{}.
	Codec Codec
	// Logger receives state changes (never per-request logs), each with
	// the context of the call that noticed it, so a handler can add trace
	// ids. Default: silent.
	Logger *slog.Logger
	// Tracer, when set, is told about each piece of work a cache does
	// beyond L1: L2 round trips, loader calls and waits for another node's
	// lease (see [Tracer]). An L1 hit never calls it. The module
	// github.com/tiercache/tiercache/tierotel makes one for OpenTelemetry.
	// Default: nil.
	Tracer Tracer

	// RedisTimeout bounds each Redis round trip. go-redis enforces a
	// context deadline on socket reads and writes only for clients created
	// with ContextTimeoutEnabled (New warns otherwise); on other clients
	// its ReadTimeout and WriteTimeout are what bound a call to an
	// unresponsive server. A healthy Redis answers in well under a
	// millisecond, so the default leaves room for a slow moment while
	// letting the breaker see an outage within about a second. Default:
	// 250ms.
	RedisTimeout time.Duration
	// MaxKeySize is the longest key accepted, in bytes. Default: 1024.
	MaxKeySize int
	// MaxValueSize is the largest encoded value accepted. Default: 1 MiB.
	MaxValueSize int
	// CompressThreshold is the encoded size in bytes from which values are
	// compressed with S2. Default: 1024 (1 KiB).
	CompressThreshold int
	// DisableCompression stores every value uncompressed. Default: false.
	DisableCompression bool
	// DisableJitter turns off the random shortening (up to 10%) of TTL and
	// LocalTTL that keeps keys filled together from expiring together.
	// Default: false.
	DisableJitter bool

	// BreakerThreshold is how many Redis round trips in a row must fail
	// (time out, or fail on the network) before the circuit breaker opens:
	// from then on every call skips Redis at once, reads go to the loader
	// and writes return [ErrUnavailable], until a probe succeeds.
	// Default: 3 (three timeouts of 250ms in a row already mean an outage).
	BreakerThreshold int
	// BreakerMinOpen is how long the breaker first stays open before one
	// call probes Redis; each failed probe doubles it, up to
	// BreakerMaxOpen. Default: 100ms.
	BreakerMinOpen time.Duration
	// BreakerMaxOpen caps the wait between probes, so the cache notices a
	// returning Redis within it. Default: 1s.
	BreakerMaxOpen time.Duration
	// DisableBreaker sends every call to Redis however many failed before,
	// each then bounded only by RedisTimeout. Default: false.
	DisableBreaker bool
	// MaxConcurrentLoads bounds the loader calls this cache runs at once,
	// so that an outage of Redis (every read a miss) does not turn into a
	// stampede on the source of truth. Loads over the bound wait for a
	// slot, bounded by LoadTimeout; their callers wait as long as their
	// contexts allow. Loads of one key are coalesced either way. Zero
	// means no bound. Default: 0.
	MaxConcurrentLoads int
	// StaleIfError, when positive, lets L1 serve a value filled at most
	// this long ago while Redis is unreachable (the breaker is open) and
	// the bus cannot prove its subscription, instead of calling the loader.
	// This relaxes promise 2: such a value may have been replaced by a
	// write that this node could not hear of. During an outage of Redis
	// itself no write can succeed, so nothing was replaced; but when only
	// this node is cut off from Redis (a partition), other nodes keep
	// writing, and it serves their replaced values for up to StaleIfError.
	// Keys invalidated while the bus still heard messages, and namespaces
	// cleared, are never served this way. Zero turns it off. Default: 0.
	StaleIfError time.Duration

	// RefreshAhead, when positive, reloads a value in the background
	// before it expires in L2, while readers keep getting it: the first
	// read of a value in the last RefreshAhead to RefreshAhead/2 of its L2
	// lifetime (the point is drawn at random per L1 entry, so that keys
	// filled together do not refresh together; a value with less than
	// that left, such as a negative entry, comes due halfway through what
	// it has left) starts the refresh. It
	// runs once across the cluster (a refresh lock in L2), with the
	// loader of the read that started it (GetOrLoad, GetOrLoadMany; Get
	// and GetMany leave a due value to them), and its value is stored
	// only if no Set or Delete of the key came in between (promise 3). A
	// key read less often than once per RefreshAhead simply expires. It
	// must be less than TTL. Refreshes run on a single server (standalone,
	// Sentinel) and on Cluster, not through other clients (a Ring). Zero
	// turns it off. Default: 0.
	RefreshAhead time.Duration
	// StaleWhileRevalidate, when positive, lets GetOrLoad serve an L1
	// entry for up to this long past its expiry while one load of the key
	// runs in the background, instead of waiting for it. A value a write
	// replaced is never served this way (its invalidation hides it), nor
	// one hidden by a clear or by a bus that cannot prove liveness. Only
	// a node that holds the entry in L1 serves it; others load as usual.
	// Zero turns it off. Default: 0.
	StaleWhileRevalidate time.Duration

	// WaitReplicas, when positive, makes every write on a single Redis
	// server (standalone or Sentinel) wait, in its own round trip, until
	// that many replicas have acknowledged it (Redis WAIT), for at most
	// half of RedisTimeout. A write Redis applied that too few replicas
	// acknowledged returns an error wrapping [ErrNotReplicated]. Without
	// it, an asynchronous failover can lose a write that returned nil and
	// bring back, in L2, the value it replaced (the README's limits).
	// Cluster and Ring clients ignore it. Default: 0 (off).
	WaitReplicas int

	// ConfirmWrites makes every Set, SetMany, Delete and Clear return only
	// once no node of the namespace can serve the value it replaced, from
	// L1 or any other path: every bus that received its invalidation has
	// applied it and acknowledged it, or the bound has run out, after
	// which a bus that did not has stopped serving L1 (its proof of
	// liveness, which no heartbeat sent after the invalidation can renew
	// before it is applied, is older than MaxStaleness). So a read that
	// starts, on any node, after a confirmed write returned gets the new
	// value. It costs the write the slowest node's acknowledgement (a
	// round trip on a healthy deployment), and up to MaxStaleness when a
	// node received the message but cannot answer; such writes are counted
	// in [Stats].ConfirmTimeouts. It rests on one timing assumption, as
	// leases do: nodes' clocks run at rates that differ by less than the
	// tenth of MaxStaleness the bus keeps as a margin. StaleIfError relaxes
	// it as it relaxes the staleness bound. [Confirm] asks it of one Set or
	// SetMany. All the nodes of a deployment must run a version that knows
	// confirmed messages. Default: false.
	ConfirmWrites bool
}

const jitterFraction = 0.1

func (o Options) withDefaults() Options {
	if o.TTL == 0 {
		o.TTL = 10 * time.Minute
	}
	if o.LocalTTL == 0 && o.TTL > 0 { // a bad TTL is reported as itself, not again as LocalTTL
		o.LocalTTL = min(time.Minute, o.TTL)
	}
	if o.LocalMaxCost == 0 {
		o.LocalMaxCost = 64 << 20
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = 10 * time.Second
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = 10 * time.Second
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.LeaseWait == 0 {
		o.LeaseWait = o.LoadTimeout / 2
	}
	if o.MaxStaleness == 0 {
		o.MaxStaleness = 2 * time.Second
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = o.MaxStaleness / 4
	}
	if o.Codec == nil {
		o.Codec = remote.JSON{}
	}
	if o.Logger == nil {
		o.Logger = discardLogger
	}
	if o.RedisTimeout == 0 {
		o.RedisTimeout = 250 * time.Millisecond
	}
	if o.MaxKeySize == 0 {
		o.MaxKeySize = 1024
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = 1 << 20
	}
	if o.CompressThreshold == 0 {
		o.CompressThreshold = remote.DefaultCompressThreshold
	}
	if o.BreakerThreshold == 0 {
		o.BreakerThreshold = 3
	}
	if o.BreakerMinOpen == 0 {
		o.BreakerMinOpen = 100 * time.Millisecond
	}
	if o.BreakerMaxOpen == 0 {
		o.BreakerMaxOpen = max(time.Second, o.BreakerMinOpen)
	}
	return o
}

// validate checks a defaulted Options and reports every problem at once,
// each an *OptionError that names the field, so that one run of New shows
// all there is to fix. It checks, with tiered's field names, the rules of
// the remote store and the bus that the cache builds, too.
func (o Options) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &OptionError{Option: "Options." + field, Reason: fmt.Sprintf(format, args...)})
	}
	if o.Redis == nil {
		bad("Redis", "required")
	}
	switch {
	case o.Namespace == "":
		bad("Namespace", "required")
	case strings.ContainsAny(o.Namespace, ":{}"):
		bad("Namespace", "%q must not contain ':', '{' or '}'", o.Namespace)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"TTL", o.TTL}, {"LocalTTL", o.LocalTTL}, {"NegativeTTL", o.NegativeTTL},
		{"LoadTimeout", o.LoadTimeout}, {"LeaseTTL", o.LeaseTTL}, {"LeaseWait", o.LeaseWait},
		{"MaxStaleness", o.MaxStaleness}, {"HeartbeatInterval", o.HeartbeatInterval},
		{"RedisTimeout", o.RedisTimeout}, {"BreakerMinOpen", o.BreakerMinOpen},
		{"StaleIfError", o.StaleIfError}, {"RefreshAhead", o.RefreshAhead},
		{"StaleWhileRevalidate", o.StaleWhileRevalidate},
	} {
		if d.v < 0 {
			bad(d.name, "must not be negative, got %v", d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"LocalMaxCost", o.LocalMaxCost}, {"MaxKeySize", int64(o.MaxKeySize)},
		{"CompressThreshold", int64(o.CompressThreshold)}, {"BreakerThreshold", int64(o.BreakerThreshold)},
		{"MaxConcurrentLoads", int64(o.MaxConcurrentLoads)}, {"WaitReplicas", int64(o.WaitReplicas)},
	} {
		if n.v < 0 {
			bad(n.name, "must not be negative, got %d", n.v)
		}
	}
	if o.LocalTTL > o.TTL && o.TTL > 0 {
		bad("LocalTTL", "%v must not exceed TTL (%v)", o.LocalTTL, o.TTL)
	}
	if o.MaxValueSize < remote.MinValueSize {
		bad("MaxValueSize", "must be at least %d (an envelope's header and a lease token), got %d", remote.MinValueSize, o.MaxValueSize)
	}
	if o.RefreshAhead > 0 && o.RefreshAhead >= o.TTL {
		bad("RefreshAhead", "%v must be less than TTL (%v)", o.RefreshAhead, o.TTL)
	}
	if o.BreakerMaxOpen < o.BreakerMinOpen {
		bad("BreakerMaxOpen", "%v must not be less than BreakerMinOpen (%v)", o.BreakerMaxOpen, o.BreakerMinOpen)
	}
	// Codec ids 1 and 2 are JSON and Msgpack; 3..127 are kept for codecs
	// of this library (see remote.Codec).
	if id := o.Codec.ID(); id != (remote.JSON{}).ID() && id != (remote.Msgpack{}).ID() && id < remote.MinUserCodecID {
		bad("Codec", "ID %d is reserved; user codecs use %d..255", id, remote.MinUserCodecID)
	}
	if o.Bus == nil && o.MaxStaleness > 0 && o.HeartbeatInterval >= o.MaxStaleness/2 {
		// The bus's own rule: one late heartbeat must not cost L1.
		bad("HeartbeatInterval", "%v must be less than MaxStaleness/2 (%v)", o.HeartbeatInterval, o.MaxStaleness/2)
	}
	return errs
}

// String prints the effective value of every knob, one per line, in the
// order and format of the table in the [Options] doc: defaults applied, so
// a zero field shows what the cache will use. For logs and tests.
func (o Options) String() string {
	o = o.withDefaults()
	set := func(b bool, yes, no string) string {
		if b {
			return yes
		}
		return no
	}
	redisName := "nil"
	if o.Redis != nil {
		redisName = fmt.Sprintf("%T", o.Redis)
	}
	logger := set(o.Logger != discardLogger, "set", "discard")
	kv := []struct {
		k string
		v any
	}{
		{"Redis", redisName},
		{"Namespace", fmt.Sprintf("%q", o.Namespace)},
		{"Bus", set(o.Bus != nil, "shared", "own")},
		{"TTL", fmtDuration(o.TTL)},
		{"LocalTTL", fmtDuration(o.LocalTTL)},
		{"LocalMaxCost", fmtBytes(o.LocalMaxCost)},
		{"NegativeTTL", fmtDuration(o.NegativeTTL)},
		{"DisableNegativeCache", o.DisableNegativeCache},
		{"LoadTimeout", fmtDuration(o.LoadTimeout)},
		{"LeaseTTL", fmtDuration(o.LeaseTTL)},
		{"LeaseWait", fmtDuration(o.LeaseWait)},
		{"MaxStaleness", fmtDuration(o.MaxStaleness)},
		{"HeartbeatInterval", fmtDuration(o.HeartbeatInterval)},
		{"Codec", fmt.Sprintf("%T", o.Codec)},
		{"Logger", logger},
		{"Tracer", set(o.Tracer != nil, "set", "nil")},
		{"RedisTimeout", fmtDuration(o.RedisTimeout)},
		{"MaxKeySize", fmtBytes(int64(o.MaxKeySize))},
		{"MaxValueSize", fmtBytes(int64(o.MaxValueSize))},
		{"CompressThreshold", fmtBytes(int64(o.CompressThreshold))},
		{"DisableCompression", o.DisableCompression},
		{"DisableJitter", o.DisableJitter},
		{"BreakerThreshold", o.BreakerThreshold},
		{"BreakerMinOpen", fmtDuration(o.BreakerMinOpen)},
		{"BreakerMaxOpen", fmtDuration(o.BreakerMaxOpen)},
		{"DisableBreaker", o.DisableBreaker},
		{"MaxConcurrentLoads", o.MaxConcurrentLoads},
		{"StaleIfError", fmtDuration(o.StaleIfError)},
		{"RefreshAhead", fmtDuration(o.RefreshAhead)},
		{"StaleWhileRevalidate", fmtDuration(o.StaleWhileRevalidate)},
		{"WaitReplicas", o.WaitReplicas},
		{"ConfirmWrites", o.ConfirmWrites},
	}
	var b strings.Builder
	for _, e := range kv {
		fmt.Fprintf(&b, "%s=%v\n", e.k, e.v)
	}
	return b.String()
}

// discardLogger is the Logger a zero Options gets.
var discardLogger = slog.New(slog.DiscardHandler)

// fmtDuration prints d as time.Duration does, without its zero minutes and
// seconds: 10m, 1h, 1m30s, 500ms.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// fmtBytes prints n bytes in KiB or MiB when it is a whole number of them.
func fmtBytes(n int64) string {
	switch {
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprint(n)
}
