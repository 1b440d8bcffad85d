package remote

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures a [Store]. The zero value of every field but Redis and
// Namespace means its default. [New] takes Options by value and keeps its own
// copy.
type Options struct {
	// Redis is the client the Store sends every command through: a
	// *redis.Client (standalone or Sentinel), a *redis.ClusterClient, or any
	// other redis.UniversalClient. The Store never closes it. Required.
	Redis redis.UniversalClient

	// Namespace prefixes every key: key k is stored as "Namespace:k". It must
	// be non-empty and contain no ':', '{' or '}' (see the package doc).
	// Required.
	Namespace string

	// Codec marshals values. Readers and writers of one namespace must use the
	// same codec; an envelope written by another codec reads as a miss with a
	// *DecodeError. Default: JSON{}.
	Codec Codec

	// Timeout bounds each round trip to Redis through its context. go-redis
	// applies a context deadline to socket reads and writes only when the
	// client was created with ContextTimeoutEnabled; otherwise its
	// ReadTimeout and WriteTimeout bound the wait for a reply. Default: 1s.
	Timeout time.Duration

	// MaxKeySize is the largest key, in bytes, before the namespace prefix.
	// Default: 1024.
	MaxKeySize int

	// MaxValueSize is the largest envelope, in bytes. It bounds the value
	// before compression too, so a reader never inflates more than this many
	// bytes; readers with a smaller limit than the writer see a *DecodeError.
	// Default: 1048576 (1 MiB).
	MaxValueSize int

	// CompressThreshold is the encoded size, in bytes, from which values are
	// compressed with S2; a value that does not shrink is stored as is.
	// Below 1 KiB, S2 saves a few hundred bytes at most (BenchmarkCompression
	// measures it). Default: 1024 (1 KiB).
	CompressThreshold int

	// DisableCompression stores every value uncompressed. Readers still
	// decompress values that other writers compressed.
	DisableCompression bool

	// BreakerThreshold is how many round trips in a row must fail with an
	// outage error (a timeout, a network error, a server that is loading
	// or has no master) before the circuit breaker opens and every call
	// returns [ErrUnavailable] at once. Default: 3.
	BreakerThreshold int
	// BreakerMinOpen is how long the breaker first stays open before it
	// lets one call through as a probe. Each failed probe doubles the
	// wait, up to BreakerMaxOpen. Default: 100ms.
	BreakerMinOpen time.Duration
	// BreakerMaxOpen caps the wait between probes, and so bounds how long
	// after Redis returns the Store notices. Default: 1s.
	BreakerMaxOpen time.Duration
	// DisableBreaker sends every call to Redis, however many failed
	// before. Default: false.
	DisableBreaker bool
	// WaitReplicas, when positive, makes each write on a single server
	// (standalone or Sentinel) also wait, in the same round trip, until
	// that many replicas have acknowledged it (WAIT), for at most half of
	// Timeout.
	// A write that Redis applied but too few replicas acknowledged in time
	// returns an error wrapping [ErrNotReplicated]. It narrows, and with a
	// failover that promotes only acknowledged replicas closes, the window
	// in which an asynchronous failover loses an acknowledged write and
	// brings the value it replaced back. Cluster and other clients ignore
	// it. Default: 0 (off).
	WaitReplicas int

	// Fence, if set, is the write fence this Store shares with the other
	// Stores given the same Fence: on a single server, a write of any of
	// them that failed can no longer land after a newer write of any of
	// them (see [Fence]). Give one Fence only to Stores of one Namespace on
	// one Redis deployment. Default: nil, a fence of the Store's own.
	Fence *Fence

	// OnBreakerChange, if set, is called with true when the breaker opens
	// and false when it closes. It runs on the goroutine of the call that
	// changed it and must not block. Default: nil.
	OnBreakerChange func(open bool)
}

// DefaultCompressThreshold is the [Options].CompressThreshold of a zero
// Options, in bytes.
const DefaultCompressThreshold = defaultCompressThreshold

// MinValueSize is the least [Options].MaxValueSize: an envelope's header
// plus a lease token, and one byte more.
const MinValueSize = headerLen + tokenLen + 1

// MinUserCodecID is the first [Codec] ID free for user codecs; IDs below
// it, other than those of [JSON] and [Msgpack], are reserved.
const MinUserCodecID = codecUserMin

// Defaults of the Options fields.
const (
	defaultTimeout           = time.Second
	defaultMaxKeySize        = 1024
	defaultMaxValueSize      = 1 << 20
	defaultCompressThreshold = 1 << 10
	defaultBreakerThreshold  = 3
	defaultBreakerMinOpen    = 100 * time.Millisecond
	defaultBreakerMaxOpen    = time.Second
)

func (o Options) withDefaults() Options {
	if o.Codec == nil {
		o.Codec = JSON{}
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.MaxKeySize == 0 {
		o.MaxKeySize = defaultMaxKeySize
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = defaultMaxValueSize
	}
	if o.CompressThreshold == 0 {
		o.CompressThreshold = defaultCompressThreshold
	}
	if o.BreakerThreshold == 0 {
		o.BreakerThreshold = defaultBreakerThreshold
	}
	if o.BreakerMinOpen == 0 {
		o.BreakerMinOpen = defaultBreakerMinOpen
	}
	if o.BreakerMaxOpen == 0 {
		o.BreakerMaxOpen = max(defaultBreakerMaxOpen, o.BreakerMinOpen)
	}
	return o
}

// validate checks Options after withDefaults and reports every problem
// at once.
func (o Options) validate() error {
	var errs []error
	if o.Redis == nil {
		errs = append(errs, errors.New("remote: Options.Redis is required"))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("remote: Options.Namespace is required"))
	}
	if strings.ContainsAny(o.Namespace, ":{}") { // see the package doc
		errs = append(errs, fmt.Errorf("remote: Options.Namespace %q must not contain ':', '{' or '}'", o.Namespace))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("remote: Options.Timeout is negative: %v", o.Timeout))
	}
	if o.MaxKeySize < 0 {
		errs = append(errs, fmt.Errorf("remote: Options.MaxKeySize is negative: %d", o.MaxKeySize))
	}
	if o.MaxValueSize < MinValueSize {
		errs = append(errs, fmt.Errorf("remote: Options.MaxValueSize must be over %d: %d", headerLen+tokenLen, o.MaxValueSize))
	}
	if o.CompressThreshold < 0 {
		errs = append(errs, fmt.Errorf("remote: Options.CompressThreshold is negative: %d", o.CompressThreshold))
	}
	if o.WaitReplicas < 0 {
		errs = append(errs, fmt.Errorf("remote: Options.WaitReplicas is negative: %d", o.WaitReplicas))
	}
	if o.BreakerThreshold < 0 {
		errs = append(errs, fmt.Errorf("remote: Options.BreakerThreshold is negative: %d", o.BreakerThreshold))
	}
	if o.BreakerMinOpen < 0 || o.BreakerMaxOpen < o.BreakerMinOpen {
		errs = append(errs, fmt.Errorf("remote: Options.BreakerMinOpen (%v) must be >= 0 and at most Options.BreakerMaxOpen (%v)", o.BreakerMinOpen, o.BreakerMaxOpen))
	}
	if id := o.Codec.ID(); id != codecJSON && id != codecMsgpack && id < codecUserMin {
		errs = append(errs, fmt.Errorf("remote: Options.Codec ID %d is reserved; user codecs use %d..255", id, codecUserMin))
	}
	return errors.Join(errs...)
}
