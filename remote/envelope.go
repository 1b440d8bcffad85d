package remote

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/klauspost/compress/s2"
)

// Kind says what an envelope holds.
type Kind uint8

// Kinds of envelope. Readers outside this package see KindValue and
// KindNegative; lease markers are reported through [LeaseState].
const (
	KindValue    Kind = 1 // a value encoded by a Codec
	KindNegative Kind = 2 // a cached "not found"
	KindLease    Kind = 3 // a lease marker holding a token
)

// String returns "value", "negative", "lease", or "Kind(n)".
func (k Kind) String() string {
	switch k {
	case KindValue:
		return "value"
	case KindNegative:
		return "negative"
	case KindLease:
		return "lease"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Envelope layout; the package doc has the table.
const (
	magic          byte = 0xC1
	formatVersion  byte = 1
	headerLen           = 13
	flagCompressed byte = 1 << 0
	tokenLen            = 16
)

// envelope is a parsed envelope. payload aliases the parsed bytes.
type envelope struct {
	kind    Kind
	codec   uint8
	flags   byte
	expiry  uint64 // Unix milliseconds; 0 means none
	payload []byte
}

// putHeader writes the header of e into b[:headerLen].
func putHeader(b []byte, kind Kind, codec uint8, flags byte, expiry uint64) {
	_ = b[headerLen-1]
	b[0] = magic
	b[1] = formatVersion
	b[2] = byte(kind)
	b[3] = codec
	b[4] = flags
	binary.BigEndian.PutUint64(b[5:headerLen], expiry)
}

// appendEnvelope appends the encoding of e to dst.
func appendEnvelope(dst []byte, e envelope) []byte {
	var h [headerLen]byte
	putHeader(h[:], e.kind, e.codec, e.flags, e.expiry)
	dst = append(dst, h[:]...)
	return append(dst, e.payload...)
}

// parseEnvelope checks b's header and splits off the payload. It accepts
// exactly the envelopes appendEnvelope can produce from a valid envelope, so
// parsing then appending gives back b. A compressed payload is checked only
// later, by decompress. The reason is empty on success.
func parseEnvelope(b []byte) (envelope, string) {
	if len(b) < headerLen {
		return envelope{}, "truncated header"
	}
	if b[0] != magic {
		return envelope{}, "not an envelope (bad magic)"
	}
	if b[1] != formatVersion {
		return envelope{}, "unknown format version"
	}
	e := envelope{
		kind:    Kind(b[2]),
		codec:   b[3],
		flags:   b[4],
		expiry:  binary.BigEndian.Uint64(b[5:headerLen]),
		payload: b[headerLen:],
	}
	if e.flags&^flagCompressed != 0 {
		return envelope{}, "unknown flags"
	}
	switch e.kind {
	case KindValue:
		if e.codec != codecJSON && e.codec != codecMsgpack && e.codec < codecUserMin {
			return envelope{}, "unknown codec id"
		}
	case KindNegative:
		if e.codec != codecNone || e.flags != 0 || len(e.payload) != 0 {
			return envelope{}, "malformed negative entry"
		}
	case KindLease:
		if e.codec != codecNone || e.flags != 0 || len(e.payload) != tokenLen {
			return envelope{}, "malformed lease marker"
		}
	default:
		return envelope{}, "unknown kind"
	}
	return e, ""
}

// expiryAt returns the header expiry of an entry written at now that lives
// for ttl, rounded up to a millisecond; 0 (none) when ttl <= 0.
func expiryAt(now time.Time, ttl time.Duration) uint64 {
	if ttl <= 0 {
		return 0
	}
	return uint64(now.UnixMilli() + millis(ttl))
}

// remaining returns the time left until expiry as seen at now, and whether
// the entry is still alive. An entry without expiry is alive with ttl 0.
func remaining(expiry uint64, now time.Time) (time.Duration, bool) {
	if expiry == 0 {
		return 0, true
	}
	left := int64(expiry) - now.UnixMilli()
	if int64(expiry) < 0 || left <= 0 {
		return 0, false
	}
	if left > maxMillis {
		left = maxMillis // a far-future expiry from a broken clock; the L1 TTL caps it anyway
	}
	return time.Duration(left) * time.Millisecond, true
}

// maxMillis is the largest millisecond count a time.Duration holds.
const maxMillis = int64(math.MaxInt64 / time.Millisecond)

// MaxTTL is the longest TTL the cache writes: longer ones are cut to it.
// Redis refuses an expiry that overflows its clock, and a duration near
// time.Duration's limit would overflow in the conversion to milliseconds.
const MaxTTL = 100 * 365 * 24 * time.Hour

// millis converts d to whole milliseconds for Redis, rounding up so that a
// positive duration never becomes 0 (no expiry), and cutting it to MaxTTL.
func millis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	d = min(d, MaxTTL)
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// compress returns a buffer holding headerLen free bytes followed by the S2
// encoding of raw, and whether that encoding is smaller than raw.
func compress(raw []byte) ([]byte, bool) {
	n := s2.MaxEncodedLen(len(raw))
	if n < 0 {
		return nil, false
	}
	buf := make([]byte, headerLen+n)
	c := s2.Encode(buf[headerLen:], raw)
	if len(c) >= len(raw) {
		return nil, false
	}
	return buf[:headerLen+len(c)], true
}

// decompress inflates an S2 payload, refusing before it allocates when the
// length it announces is over limit.
func decompress(payload []byte, limit int) ([]byte, string, error) {
	n, err := s2.DecodedLen(payload)
	if err != nil {
		return nil, "corrupt compressed payload", err
	}
	if n > limit {
		return nil, fmt.Sprintf("compressed payload inflates to %d bytes, limit %d", n, limit), nil
	}
	out, err := s2.Decode(make([]byte, n), payload)
	if err != nil {
		return nil, "corrupt compressed payload", err
	}
	return out, "", nil
}

// EnvelopeExpiry returns the header expiry of data (from [Store.Encode] or
// [Store.EncodeNegative]), in Unix milliseconds, or 0 when data is not an
// envelope or has none: what [Item.Expiry] reports once data is stored.
func EnvelopeExpiry(data []byte) uint64 {
	e, reason := parseEnvelope(data)
	if reason != "" {
		return 0
	}
	return e.expiry
}
