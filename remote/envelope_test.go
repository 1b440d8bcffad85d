package remote

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
)

// header builds an envelope header for tests.
func header(kind Kind, codec uint8, flags byte, expiry uint64) []byte {
	b := make([]byte, headerLen)
	putHeader(b, kind, codec, flags, expiry)
	return b
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseEnvelope(t *testing.T) {
	token := bytes.Repeat([]byte{7}, tokenLen)
	tests := []struct {
		name       string
		give       []byte
		wantKind   Kind
		wantReason string
	}{
		{"value", join(header(KindValue, codecJSON, 0, 0), []byte(`{"a":1}`)), KindValue, ""},
		{"empty value payload", header(KindValue, codecMsgpack, 0, 5), KindValue, ""},
		{"user codec", join(header(KindValue, 200, 0, 0), []byte("x")), KindValue, ""},
		{"compressed value", join(header(KindValue, codecJSON, flagCompressed, 0), s2.Encode(nil, []byte("hello"))), KindValue, ""},
		{"negative", header(KindNegative, codecNone, 0, 9), KindNegative, ""},
		{"lease", join(header(KindLease, codecNone, 0, 9), token), KindLease, ""},
		{"nil", nil, 0, "truncated header"},
		{"short", header(KindValue, codecJSON, 0, 0)[:headerLen-1], 0, "truncated header"},
		{"json text", []byte(`{"a":1,"b":"0123456789"}`), 0, "not an envelope (bad magic)"},
		{"version 2", func() []byte { b := header(KindValue, codecJSON, 0, 0); b[1] = 2; return b }(), 0, "unknown format version"},
		{"kind 0", header(0, codecJSON, 0, 0), 0, "unknown kind"},
		{"kind 4", header(4, codecJSON, 0, 0), 0, "unknown kind"},
		{"flags", header(KindValue, codecJSON, 2, 0), 0, "unknown flags"},
		{"codec 0", header(KindValue, codecNone, 0, 0), 0, "unknown codec id"},
		{"codec 3", header(KindValue, 3, 0, 0), 0, "unknown codec id"},
		{"negative with payload", join(header(KindNegative, codecNone, 0, 0), []byte("x")), 0, "malformed negative entry"},
		{"negative with codec", header(KindNegative, codecJSON, 0, 0), 0, "malformed negative entry"},
		{"lease short token", join(header(KindLease, codecNone, 0, 0), token[:15]), 0, "malformed lease marker"},
		{"lease compressed", join(header(KindLease, codecNone, flagCompressed, 0), token), 0, "malformed lease marker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, reason := parseEnvelope(tt.give)
			if reason != tt.wantReason || e.kind != tt.wantKind {
				t.Errorf("parseEnvelope(%x) = kind %v, reason %q; want kind %v, reason %q", tt.give, e.kind, reason, tt.wantKind, tt.wantReason)
			}
		})
	}
}

func TestRemaining(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	tests := []struct {
		name      string
		give      uint64
		wantTTL   time.Duration
		wantAlive bool
	}{
		{"none", 0, 0, true},
		{"future", 1_005_000, 5 * time.Second, true},
		{"now", 1_000_000, 0, false},
		{"past", 1, 0, false},
		{"overflow", 1 << 63, 0, false},
		{"far future", 1<<63 - 1, time.Duration(maxMillis) * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ttl, alive := remaining(tt.give, now)
			if ttl != tt.wantTTL || alive != tt.wantAlive {
				t.Errorf("remaining(%d) = %v, %v; want %v, %v", tt.give, ttl, alive, tt.wantTTL, tt.wantAlive)
			}
		})
	}
}

func TestMillis(t *testing.T) {
	tests := []struct {
		give time.Duration
		want int64
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{time.Minute, 60_000},
	}
	for _, tt := range tests {
		if got := millis(tt.give); got != tt.want {
			t.Errorf("millis(%v) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

func TestDecompressBounded(t *testing.T) {
	big := s2.Encode(nil, bytes.Repeat([]byte("a"), 1<<16))
	tests := []struct {
		name       string
		give       []byte
		limit      int
		wantReason string
	}{
		{"fits", big, 1 << 16, ""},
		{"over limit", big, 1<<16 - 1, "compressed payload inflates to 65536 bytes, limit 65535"},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1 << 20, "corrupt compressed payload"},
		{"truncated", big[:len(big)/2], 1 << 16, "corrupt compressed payload"},
		// Announces 4 GiB - 1 bytes: refused before allocating.
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 1 << 20, "compressed payload inflates to 4294967295 bytes, limit 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, reason, _ := decompress(tt.give, tt.limit)
			if reason != tt.wantReason {
				t.Errorf("decompress() reason = %q, want %q", reason, tt.wantReason)
			}
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	token := bytes.Repeat([]byte{0xAB}, tokenLen)
	doc := []byte(`{"id":42,"name":"widget","tags":["a","b"],"price":9.5}`)
	for _, seed := range [][]byte{
		join(header(KindValue, codecJSON, 0, 0), doc),
		join(header(KindValue, codecJSON, 0, uint64(time.Now().Add(time.Hour).UnixMilli())), doc),
		join(header(KindValue, codecJSON, flagCompressed, 0), s2.Encode(nil, bytes.Repeat(doc, 20))),
		join(header(KindValue, codecMsgpack, 0, 0), []byte{0x81, 0xa1, 'a', 0x01}),
		header(KindNegative, codecNone, 0, 1),
		join(header(KindLease, codecNone, 0, 0), token),
		// Broken ones.
		nil,
		{magic},
		doc,
		join(header(KindValue, codecJSON, flagCompressed, 0), []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}),
		join(header(KindValue, codecJSON, 0, 0), doc[:10]),
		join(header(9, 9, 9, 9), token),
	} {
		f.Add(seed)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		e, reason := parseEnvelope(b)
		if reason != "" {
			return
		}
		if got := appendEnvelope(nil, e); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding %x gives %x", b, got)
		}
		remaining(e.expiry, now)
		payload := e.payload
		if e.flags&flagCompressed != 0 {
			raw, reason, _ := decompress(payload, 1<<20)
			if reason != "" {
				return
			}
			if len(raw) > 1<<20 {
				t.Fatalf("decompress gave %d bytes over its limit", len(raw))
			}
			payload = raw
		}
		var v any
		_ = json.Unmarshal(payload, &v)
	})
}
