package tiered

import (
	"errors"
	"fmt"
	"log/slog"
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
// Defaults, as printed by [Options.String] for a zero Options:
//
//	TTL                10m  L2 lifetime of a value (jittered down by up to 10%)
//	LocalTTL           1m   L1 lifetime, capped by TTL and by the L2 TTL left
//	LocalMaxCost       64 MiB of encoded value bytes in L1
//	NegativeTTL        10s  lifetime of a cached "not found"
//	LoadTimeout        10s  bound on one shared load
//	LeaseTTL           10s  lifetime of a lease nobody fills
//	LeaseWait          1s   how long a caller waits for another node's load
//	MaxStaleness       2s   staleness bound (own Bus only)
//	HeartbeatInterval  MaxStaleness/4 (500ms) bus heartbeat (own Bus only)
//	RedisTimeout       250ms bound on each Redis round trip
//	MaxKeySize         1024 bytes
//	MaxValueSize       1 MiB encoded
//	CompressThreshold  remote's default
//	Codec              JSON
//	BreakerThreshold   3    consecutive Redis failures that open the breaker
//	BreakerMinOpen     100ms first wait before a probe (doubles per failed probe)
//	BreakerMaxOpen     1s   longest wait between probes
//	MaxConcurrentLoads 0    no bound on loader calls at once
//	StaleIfError       0    off: L1 serves nothing unproven during an outage
//	RefreshAhead       0    off: values expire, and the next read loads
//	StaleWhileRevalidate 0  off: an expired value is never served
type Options struct {
	// Redis is the L2 client: *redis.Client, *redis.ClusterClient or a
	// Sentinel-backed client. Required. The cache never closes it. A
	// Cluster client that reads replicas is supported (fills then read
	// the master with GETEX); a failover client with ReplicaOnly is not
	// (see the package doc).
	Redis redis.UniversalClient
	// Namespace prefixes every L2 key ("ns:key") and scopes invalidations.
	// Required.
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
	// LoadTimeout bounds one shared load: the lease round trips, the loader
	// and the fill. Default: 10s.
	LoadTimeout time.Duration
	// LeaseTTL is how long a lease marker lives in L2 if its holder never
	// fills or releases it (a crashed node). Default: 10s.
	LeaseTTL time.Duration
	// LeaseWait is how long a caller polls for a value another node is
	// loading before it loads by itself, without filling L2. Default: 1s.
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
	// Logger receives state changes (never per-request logs). Default: silent.
	Logger *slog.Logger

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
	// CompressThreshold is the encoded size from which values are
	// compressed. Default: remote's default.
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
}

const jitterFraction = 0.1

func (o Options) withDefaults() Options {
	if o.TTL == 0 {
		o.TTL = 10 * time.Minute
	}
	if o.LocalTTL == 0 {
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
		o.LeaseWait = time.Second
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
		o.Logger = slog.New(slog.DiscardHandler)
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

// validate checks a defaulted Options. Every error names the field.
func (o Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("tiered: Options."+format, args...))
	}
	if o.Redis == nil {
		bad("Redis is required")
	}
	if o.Namespace == "" {
		bad("Namespace is required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"TTL", o.TTL}, {"LocalTTL", o.LocalTTL}, {"NegativeTTL", o.NegativeTTL},
		{"LoadTimeout", o.LoadTimeout}, {"LeaseTTL", o.LeaseTTL}, {"LeaseWait", o.LeaseWait},
		{"MaxStaleness", o.MaxStaleness}, {"HeartbeatInterval", o.HeartbeatInterval},
		{"RedisTimeout", o.RedisTimeout},
	} {
		if d.v < 0 {
			bad("%s must not be negative, got %v", d.name, d.v)
		}
	}
	if o.LocalTTL > o.TTL {
		bad("LocalTTL (%v) must not exceed TTL (%v)", o.LocalTTL, o.TTL)
	}
	if o.LocalMaxCost < 0 {
		bad("LocalMaxCost must not be negative, got %d", o.LocalMaxCost)
	}
	if o.MaxKeySize < 0 || o.MaxValueSize < 0 || o.CompressThreshold < 0 {
		bad("MaxKeySize, MaxValueSize and CompressThreshold must not be negative")
	}
	if o.BreakerThreshold < 0 || o.MaxConcurrentLoads < 0 || o.StaleIfError < 0 {
		bad("BreakerThreshold, MaxConcurrentLoads and StaleIfError must not be negative")
	}
	if o.RefreshAhead < 0 || o.RefreshAhead > 0 && o.RefreshAhead >= o.TTL {
		bad("RefreshAhead (%v) must not be negative and must be less than TTL (%v)", o.RefreshAhead, o.TTL)
	}
	if o.StaleWhileRevalidate < 0 {
		bad("StaleWhileRevalidate must not be negative, got %v", o.StaleWhileRevalidate)
	}
	if o.BreakerMinOpen < 0 || o.BreakerMaxOpen < o.BreakerMinOpen {
		bad("BreakerMinOpen (%v) must not be negative nor exceed BreakerMaxOpen (%v)", o.BreakerMinOpen, o.BreakerMaxOpen)
	}
	return errors.Join(errs...)
}

// String lists every knob with its value, one per line, for logs and tests.
func (o Options) String() string {
	o = o.withDefaults()
	return fmt.Sprintf("Namespace=%q TTL=%v LocalTTL=%v LocalMaxCost=%d NegativeTTL=%v "+
		"DisableNegativeCache=%v LoadTimeout=%v LeaseTTL=%v LeaseWait=%v MaxStaleness=%v "+
		"HeartbeatInterval=%v Codec=%T RedisTimeout=%v MaxKeySize=%d MaxValueSize=%d "+
		"CompressThreshold=%d DisableCompression=%v DisableJitter=%v SharedBus=%v "+
		"BreakerThreshold=%d BreakerMinOpen=%v BreakerMaxOpen=%v DisableBreaker=%v MaxConcurrentLoads=%d StaleIfError=%v "+
		"RefreshAhead=%v StaleWhileRevalidate=%v",
		o.Namespace, o.TTL, o.LocalTTL, o.LocalMaxCost, o.NegativeTTL,
		o.DisableNegativeCache, o.LoadTimeout, o.LeaseTTL, o.LeaseWait, o.MaxStaleness,
		o.HeartbeatInterval, o.Codec, o.RedisTimeout, o.MaxKeySize, o.MaxValueSize,
		o.CompressThreshold, o.DisableCompression, o.DisableJitter, o.Bus != nil,
		o.BreakerThreshold, o.BreakerMinOpen, o.BreakerMaxOpen, o.DisableBreaker, o.MaxConcurrentLoads, o.StaleIfError,
		o.RefreshAhead, o.StaleWhileRevalidate)
}
