package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/saturate"
)

// Store is the L2 tier: typed access to envelopes in Redis under one
// namespace. It is safe for concurrent use by multiple goroutines. It does
// not own its Redis client: closing the client is the caller's job, and
// calls made after that return the client's error.
type Store struct {
	rdb     redis.UniversalClient
	opts    Options
	prefix  string // Namespace + ":"
	codec   Codec
	codecID uint8
	topo    topology
	// masterReads is set for a Cluster client that may send read-only
	// commands to replicas (ReadOnly, RouteByLatency, RouteRandomly): reads
	// then use GETEX, a write command that go-redis sends to the master.
	// A replica lags its master, so a read there just after a write
	// returns the old value, which L1 would then keep for LocalTTL under a
	// stamp taken after the invalidation.
	masterReads bool
	brk         breaker
	fence       *Fence // single server only; Options.Fence or its own
	stats       counters
	// scriptLease is set once the server has refused SET with both NX and
	// GET (Redis before 7.0); leases then go through leaseScript.
	scriptLease atomic.Bool
	// plainRaise is set once the server has refused a script with flags
	// (Redis before 7.0): the fence is then raised with a plain SET, and
	// the breaker probes with a PING.
	plainRaise atomic.Bool
	// detach is set for a client that does not cut a call short at its
	// context's deadline: each round trip then runs on a goroutine of its
	// own, counted in calls (see detach.go).
	detach bool
	calls  sync.WaitGroup // abandoned calls and breaker probes; Adds under mu's read lock
	mu     sync.RWMutex   // guards closed
	closed bool           // set by Close: no goroutine starts after it
}

// topology decides how batches travel.
type topology uint8

const (
	// topoSingle is one server (standalone or Sentinel): MGET, and writes
	// in one fenced script (fence.go).
	topoSingle topology = iota
	// topoCluster is Redis Cluster: one MGET per hash slot, plain pipelines.
	topoCluster
	// topoSharded is any other client (a Ring, a wrapper): single-key
	// commands in plain pipelines, which every client can route.
	topoSharded
)

// New returns a Store over o.Redis. It returns an error naming the field
// when o is invalid, and sends nothing to Redis.
func New(o Options) (*Store, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &Store{
		rdb:     o.Redis,
		opts:    o,
		prefix:  o.Namespace + ":",
		codec:   o.Codec,
		codecID: o.Codec.ID(),
		topo:    topoSharded,
	}
	s.fence = o.Fence
	if s.fence == nil {
		s.fence = new(Fence)
	}
	s.detach = !honoursDeadline(o.Redis)
	s.brk = breaker{
		threshold: int32(o.BreakerThreshold),
		minOpen:   o.BreakerMinOpen,
		maxOpen:   o.BreakerMaxOpen,
		probeFor:  saturate.Add(o.Timeout, o.BreakerMinOpen),
		disabled:  o.DisableBreaker,
		start:     time.Now(),
		onChange:  o.OnBreakerChange,
	}
	switch c := o.Redis.(type) {
	case *redis.Client:
		s.topo = topoSingle
	case *redis.ClusterClient:
		s.topo = topoCluster
		co := c.Options()
		s.masterReads = co.ReadOnly || co.RouteByLatency || co.RouteRandomly
	}
	return s, nil
}

// Key returns the Redis key of key: "Namespace:key".
func (s *Store) Key(key string) string { return s.prefix + key }

// CheckKey returns nil if key can be stored, or a *[KeyError] when it is
// empty, longer than [Options.MaxKeySize], or starts with a NUL byte (keys
// "Namespace:\x00..." are the cache's own: fences and refresh locks).
func (s *Store) CheckKey(key string) error {
	switch {
	case key == "":
		return &KeyError{Limit: s.opts.MaxKeySize, Reason: "empty"}
	case key[0] == 0:
		// "ns:\x00..." holds the cache's own keys: write fences and
		// refresh locks.
		return &KeyError{Key: shortKey(key), Len: len(key), Limit: s.opts.MaxKeySize, Reason: "reserved (it starts with a NUL byte)"}
	case len(key) > s.opts.MaxKeySize:
		return &KeyError{Key: shortKey(key), Len: len(key), Limit: s.opts.MaxKeySize, Reason: "too long"}
	}
	return nil
}

// Item is an entry read from L2: a value or a negative entry. The zero Item
// is not a valid entry. An Item is never modified, so goroutines may share
// it.
type Item struct {
	Kind Kind // KindValue or KindNegative
	// TTL is the time left before the entry expires, from the expiry the
	// writer put in the envelope and the reader's clock (the package doc
	// explains the skew caveat); 0 means the entry has no expiry.
	TTL  time.Duration
	Size int // bytes of the envelope as stored

	key        string
	codec      uint8
	compressed bool
	payload    []byte
	expiry     uint64 // the header's, Unix milliseconds; 0: none
}

// Expiry returns the entry's expiry as its writer stamped it, in Unix
// milliseconds (0: none). Every write stamps its own, so two reads that
// see the same expiry almost surely saw the same write; a refresh uses it
// to tell whether the value it would refresh is still the one in L2.
func (it Item) Expiry() uint64 { return it.expiry }

// Encode marshals v with the Store's codec, compresses it from
// [Options.CompressThreshold] bytes on, and wraps it in a value envelope
// that expires after ttl (ttl <= 0: no expiry). It returns a
// *[ValueSizeError] when the encoded value, before or after compression, is
// over [Options.MaxValueSize], and a wrapped error when the codec fails or
// panics (the panic is recovered); key is used only in errors.
func (s *Store) Encode(key string, v any, ttl time.Duration) ([]byte, error) {
	raw, err := s.marshal(v)
	if err != nil {
		return nil, opError("encode", key, err)
	}
	if size := headerLen + len(raw); size > s.opts.MaxValueSize {
		return nil, &ValueSizeError{Key: shortKey(key), Size: size, Limit: s.opts.MaxValueSize}
	}
	var (
		buf   []byte
		flags byte
	)
	if !s.opts.DisableCompression && len(raw) >= s.opts.CompressThreshold {
		if c, ok := compress(raw); ok {
			buf, flags = c, flagCompressed
		}
	}
	if buf == nil {
		buf = make([]byte, headerLen+len(raw))
		copy(buf[headerLen:], raw)
	}
	putHeader(buf, KindValue, s.codecID, flags, expiryAt(time.Now(), ttl))
	return buf, nil
}

// marshal runs the codec and turns its panic into an error, so that a
// codec that panics on one value fails that value's write or fill, and
// nothing else: the panic would otherwise unwind a shared load.
func (s *Store) marshal(v any) (raw []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			raw, err = nil, fmt.Errorf("codec %T panicked: %v", s.codec, p)
		}
	}()
	return s.codec.Marshal(v)
}

// EncodeNegative returns a negative envelope (a cached "not found") that
// expires after ttl (ttl <= 0: no expiry).
func (s *Store) EncodeNegative(ttl time.Duration) []byte {
	buf := make([]byte, headerLen)
	putHeader(buf, KindNegative, codecNone, 0, expiryAt(time.Now(), ttl))
	return buf
}

// Decode unmarshals a KindValue item into dst, a pointer, with the Store's
// codec. It returns a *[DecodeError] when it is not a value, was written by
// another codec, or its payload is corrupt, and counts the latter two in
// [Stats].DecodeErrors.
func (s *Store) Decode(it Item, dst any) error {
	if it.Kind != KindValue {
		return &DecodeError{Key: it.key, Reason: "item is a " + it.Kind.String() + " entry, not a value"}
	}
	if it.codec != s.codecID {
		return s.decodeError(it.key, fmt.Sprintf("codec id %d, store uses %d", it.codec, s.codecID), nil)
	}
	data := it.payload
	if it.compressed {
		raw, reason, err := decompress(data, s.opts.MaxValueSize)
		if reason != "" {
			return s.decodeError(it.key, reason, err)
		}
		data = raw
	}
	return s.unmarshal(it.key, data, dst)
}

// unmarshal runs the codec and turns its panic, on bytes that came over the
// network, into a *DecodeError.
func (s *Store) unmarshal(key string, data []byte, dst any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.decodeError(key, "unmarshal panicked", fmt.Errorf("%v", p))
		}
	}()
	if err := s.codec.Unmarshal(data, dst); err != nil {
		return s.decodeError(key, "unmarshal", err)
	}
	return nil
}

func (s *Store) decodeError(key, reason string, err error) *DecodeError {
	s.stats.decodeErrors.Add(1)
	return &DecodeError{Key: shortKey(key), Reason: reason, Err: err}
}

// readResult classifies stored bytes.
type readResult uint8

const (
	readEntry   readResult = iota // a live value or negative entry
	readLease                     // a lease marker
	readExpired                   // an entry whose header expiry has passed
	readBad                       // not a valid envelope for this Store
)

// read parses the envelope b stored under key, as seen at now, and counts
// it. b is kept by the returned Item.
func (s *Store) read(key string, b []byte, now time.Time) (Item, readResult, error) {
	s.stats.bytesRead.Add(uint64(len(b)))
	e, reason := parseEnvelope(b)
	if reason != "" {
		return Item{}, readBad, s.decodeError(key, reason, nil)
	}
	switch {
	case e.kind == KindLease:
		return Item{}, readLease, nil
	case e.kind == KindValue && e.codec != s.codecID:
		// A miss. No lease can be taken on a key that holds a value, so
		// tiered loads it without filling L2, and the entry stays until a
		// Set or Delete replaces it or its TTL ends.
		return Item{}, readBad, s.decodeError(key, fmt.Sprintf("codec id %d, store uses %d", e.codec, s.codecID), nil)
	}
	ttl, alive := remaining(e.expiry, now)
	if !alive {
		return Item{}, readExpired, nil
	}
	return Item{
		Kind:       e.kind,
		TTL:        ttl,
		Size:       len(b),
		key:        key,
		codec:      e.codec,
		compressed: e.flags&flagCompressed != 0,
		payload:    e.payload,
		expiry:     e.expiry,
	}, readEntry, nil
}

// Get reads key in one round trip. ok is false for a missing key, a lease
// marker or an expired entry, with a nil error; bytes that do not decode,
// and a key of another Redis type, are ok=false with a *[DecodeError],
// counted in [Stats]. Failed round trips
// return an error wrapping the client's, and a bad key a *[KeyError].
func (s *Store) Get(ctx context.Context, key string) (it Item, ok bool, err error) {
	if err := s.CheckKey(key); err != nil {
		return Item{}, false, err
	}
	rctx, cancel, start, ok := s.begin(ctx)
	if !ok {
		return Item{}, false, opError("get", key, ErrUnavailable)
	}
	var b []byte // read only when err is nil: an abandoned call may still write it
	err = s.do(rctx, func() error {
		var err error
		if s.masterReads {
			var str string
			str, err = s.rdb.Do(rctx, "getex", s.prefix+key).Text()
			b = stringBytes(str)
		} else {
			b, err = s.rdb.Get(rctx, s.prefix+key).Bytes()
		}
		return err
	})
	cancel()
	now := s.end(rctx, opGet, start, err)
	if err == redis.Nil {
		return Item{}, false, nil
	}
	if isWrongType(err) {
		return Item{}, false, s.decodeError(key, "not a string (WRONGTYPE)", err)
	}
	if err != nil {
		return Item{}, false, opError("get", key, err)
	}
	it, res, err := s.read(key, b, now)
	return it, res == readEntry, err
}

// isWrongType reports whether err is Redis refusing a string command on a
// key of another type (a list or hash someone stored under a cache key).
// Every read treats such a key as bytes that do not decode: a miss, counted
// in DecodeErrors, never a Redis failure. (MGET cannot tell: it answers nil
// for such keys, which GetMany reports as a plain miss.)
func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "WRONGTYPE")
}

// GetMany reads keys in one round trip: one MGET on a *redis.Client, one
// MGET per hash slot in a single pipeline on a *redis.ClusterClient, and one
// GET per key in a single pipeline on any other client. items and ok always
// have len(keys) entries, aligned with keys; ok[i] is false for a miss.
// Entries that do not decode are misses, counted in [Stats].DecodeErrors
// but not returned. err is non-nil only for a bad key (a *[KeyError], before
// any round trip) or a failed round trip; on Cluster, keys on the nodes that
// answered are still filled in.
func (s *Store) GetMany(ctx context.Context, keys []string) (items []Item, ok []bool, err error) {
	for _, k := range keys {
		if err := s.CheckKey(k); err != nil {
			return nil, nil, err
		}
	}
	items = make([]Item, len(keys))
	ok = make([]bool, len(keys))
	if len(keys) == 0 {
		return items, ok, nil
	}
	full := s.fullKeys(keys)
	rctx, cancel, start, admitted := s.begin(ctx)
	if !admitted {
		return items, ok, &OpError{Op: "get many", Detail: fmt.Sprintf("(%d keys)", len(keys)), Err: ErrUnavailable}
	}
	var got []any // read only when the call was not abandoned
	err = s.do(rctx, func() error {
		var err error
		switch {
		case s.masterReads:
			got, err = s.getPipelined(rctx, full, "getex")
		case s.topo == topoSingle:
			got, err = s.rdb.MGet(rctx, full...).Result()
		case s.topo == topoCluster:
			got, err = s.mgetBySlot(rctx, full)
		default:
			got, err = s.getPipelined(rctx, full, "get")
		}
		return err
	})
	cancel()
	var vals []any
	if !isAbandoned(err) {
		vals = got
	}
	now := s.end(rctx, opGetMany, start, err)
	for i, v := range vals {
		if str, isStr := v.(string); isStr {
			var res readResult
			items[i], res, _ = s.read(keys[i], stringBytes(str), now)
			ok[i] = res == readEntry
		}
	}
	if err != nil {
		return items, ok, &OpError{Op: "get many", Detail: fmt.Sprintf("(%d keys, first %q)", len(keys), shortKey(keys[0])), Err: err}
	}
	return items, ok, nil
}

// mgetBySlot sends one MGET per hash slot in one pipeline, which go-redis
// splits by node and sends to the nodes in parallel. vals is aligned with
// keys: a string, or nil for a miss or a failed command.
func (s *Store) mgetBySlot(ctx context.Context, keys []string) ([]any, error) {
	groups := groupBySlot(keys)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(groups))
	for g, idx := range groups {
		args := make([]string, len(idx))
		for j, i := range idx {
			args[j] = keys[i]
		}
		cmds[g] = pipe.MGet(ctx, args...)
	}
	_, _ = pipe.Exec(ctx) // every command's error is read below
	vals := make([]any, len(keys))
	var firstErr error
	for g, idx := range groups {
		res, err := cmds[g].Result()
		if err != nil {
			firstErr = keepFirst(firstErr, err)
			continue
		}
		for j, i := range idx {
			if j < len(res) {
				vals[i] = res[j]
			}
		}
	}
	return vals, firstErr
}

// getPipelined sends one GET (or GETEX, which reads the master; see
// masterReads) per key in one pipeline. A key of another Redis type is a
// miss, as MGET makes it.
func (s *Store) getPipelined(ctx context.Context, keys []string, command string) ([]any, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Do(ctx, command, k)
	}
	_, _ = pipe.Exec(ctx) // every command's error is read below
	vals := make([]any, len(keys))
	var firstErr error
	for i, c := range cmds {
		v, err := c.Text()
		switch {
		case err == nil:
			vals[i] = v
		case err != redis.Nil && !isWrongType(err):
			firstErr = keepFirst(firstErr, err)
		}
	}
	return vals, firstErr
}

// keepFirst returns first if it is set, else err.
func keepFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// fullKeys returns the Redis keys of keys, built in one allocation.
func (s *Store) fullKeys(keys []string) []string {
	n := 0
	for _, k := range keys {
		n += len(s.prefix) + len(k)
	}
	buf := make([]byte, 0, n)
	out := make([]string, len(keys))
	for i, k := range keys {
		at := len(buf)
		buf = append(buf, s.prefix...)
		buf = append(buf, k...)
		// buf never grows past its capacity and is not written again, so
		// the strings stay valid and immutable.
		out[i] = unsafe.String(&buf[at], len(buf)-at)
	}
	return out
}

// stringBytes returns the bytes of a reply string without copying, as
// go-redis's StringCmd.Bytes does. The bytes are only read: parsed here,
// inflated by S2 and unmarshaled by a Codec, which must not modify them.
func stringBytes(str string) []byte {
	return unsafe.Slice(unsafe.StringData(str), len(str))
}
