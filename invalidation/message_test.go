package invalidation

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var testOrigin = strings.Repeat("\x01", nodeIDLen)

// decoded returns m as decodeMessage makes it from m's encoding, with its
// keys left encoded.
func decoded(t testing.TB, m message) message {
	t.Helper()
	d, err := decodeMessage(string(appendMessage(nil, &m)))
	if err != nil {
		t.Fatalf("decodeMessage(appendMessage(%+v)) error = %v", m, err)
	}
	return d
}

// decodeAll decodes p and collects its keys, and drops what decodeMessage
// adds only to keep them encoded, so that the result compares with the
// message p encodes.
func decodeAll(p string) (message, error) {
	m, err := decodeMessage(p)
	if err != nil {
		return message{}, err
	}
	m.keys = m.appendKeys(nil)
	m.nkeys, m.rawKeys = 0, ""
	return m, nil
}

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		give message
	}{
		{name: "delete one", give: message{op: OpDelete, seq: 1, sent: 1, namespace: "ns", keys: []string{"k"}}},
		{name: "delete many", give: message{op: OpDelete, seq: 300, sent: 1e18, namespace: "products", keys: []string{"a", "bb", "ccc", strings.Repeat("x", 200)}}},
		{name: "delete most", give: message{op: OpDelete, seq: 2, namespace: "ns", keys: slices.Repeat([]string{"k"}, maxKeysPerMessage)}},
		{name: "clear", give: message{op: OpClear, seq: math.MaxUint64, sent: -5, namespace: "ns"}},
		{name: "heartbeat", give: message{op: opHeartbeat, seq: 7, sent: math.MaxInt64}},
		{name: "binary namespace and key", give: message{op: OpDelete, seq: 1 << 35, namespace: "\x00\xff", keys: []string{"\xb7\x01"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.origin = testOrigin
			p := appendMessage(nil, &tt.give)
			got, err := decodeAll(string(p))
			if err != nil {
				t.Fatalf("decodeMessage(appendMessage(%+v)) error = %v", tt.give, err)
			}
			if !reflect.DeepEqual(got, tt.give) {
				t.Errorf("decodeMessage(appendMessage(m)) = %+v, want %+v", got, tt.give)
			}
		})
	}
}

func TestBusMessageDecodes(t *testing.T) {
	b := &Bus{nodeID: testOrigin}
	p1 := b.Message("ns", OpDelete, []string{"a", "b"})
	p2 := b.Message("ns", OpClear, nil)
	m1, err1 := decodeMessage(string(p1))
	m2, err2 := decodeMessage(string(p2))
	if err1 != nil || err2 != nil {
		t.Fatalf("decode errors: %v, %v", err1, err2)
	}
	if m1.seq != 1 || m2.seq != 2 || m1.origin != testOrigin || m1.op != OpDelete || m2.op != OpClear {
		t.Errorf("messages = %+v, %+v, want seq 1 and 2 from testOrigin", m1, m2)
	}
	if s := b.Stats(); s.Messages != 2 || s.MessageKeys != 2 {
		t.Errorf("Stats() Messages, MessageKeys = %d, %d, want 2, 2", s.Messages, s.MessageKeys)
	}
}

// encode encodes an op of keys in namespace "ns" from testOrigin.
func encode(op Op, keys ...string) string {
	return string(appendMessage(nil, &message{op: op, origin: testOrigin, seq: 1, namespace: "ns", keys: keys}))
}

func TestDecodeMessageErrors(t *testing.T) {
	valid := appendMessage(nil, &message{op: OpDelete, origin: testOrigin, seq: 9, sent: 1, namespace: "ns", keys: []string{"k1", "k2"}})
	with := func(i int, c byte) string {
		p := bytes.Clone(valid)
		p[i] = c
		return string(p)
	}
	tests := []struct {
		name string
		give string
		want error
	}{
		{name: "empty", give: "", want: errForeign},
		{name: "text", give: "hello", want: errForeign},
		{name: "magic only", give: "\xb7", want: errMalformed},
		{name: "other version", give: with(1, 2), want: errForeign},
		{name: "short header", give: string(valid[:headerLen-1]), want: errMalformed},
		{name: "op zero", give: with(2, 0), want: errMalformed},
		{name: "op unknown", give: with(2, 6), want: errMalformed},
		{name: "confirm on filled", give: with(2, 5|0x80), want: errMalformed},
		{name: "confirm on a heartbeat", give: with(2, 3|0x80), want: errMalformed},
		{name: "confirm on an ack", give: with(2, 4|0x80), want: errMalformed},
		{name: "no seq", give: string(valid[:headerLen]), want: errMalformed},
		{name: "truncated", give: string(valid[:len(valid)-1]), want: errMalformed},
		{name: "trailing byte", give: string(valid) + "x", want: errMalformed},
		{name: "seq overflow", give: string(valid[:headerLen]) + strings.Repeat("\xff", 10) + "\x01", want: errMalformed},
		{name: "huge key count", give: string(valid[:headerLen]) + "\x01" + strings.Repeat("\x00", 8) + "\x00" + "\xff\xff\xff\xff\x0f", want: errMalformed},
		{name: "key longer than rest", give: string(valid[:headerLen]) + "\x01" + strings.Repeat("\x00", 8) + "\x00" + "\x01\x05ab", want: errMalformed},
		{name: "namespace longer than rest", give: string(valid[:headerLen]) + "\x01" + strings.Repeat("\x00", 8) + "\x09ns", want: errMalformed},
		{name: "empty key", give: encode(OpDelete, "k", ""), want: errMalformed},
		{name: "only empty keys", give: encode(OpDelete, slices.Repeat([]string{""}, 100)...), want: errMalformed},
		{name: "empty key in a clear", give: encode(OpClear, ""), want: errMalformed},
		{name: "too many keys", give: encode(OpDelete, slices.Repeat([]string{"k"}, maxKeysPerMessage+1)...), want: errMalformed},
		{name: "too many keys in a clear", give: encode(OpClear, slices.Repeat([]string{"k"}, maxKeysPerMessage+1)...), want: errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeMessage(tt.give); !errors.Is(err, tt.want) {
				t.Errorf("decodeMessage(%q) error = %v, want %v", tt.give, err, tt.want)
			}
		})
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []message{
		{op: OpDelete, seq: 1, sent: 1, namespace: "ns", keys: []string{"k"}},
		{op: OpDelete, seq: 1 << 40, sent: 123456789, namespace: "products", keys: []string{"1", "22", "333"}},
		{op: OpClear, seq: 2, namespace: "ns"},
		{op: opHeartbeat, seq: 3, sent: 99},
	} {
		m.origin = testOrigin
		p := appendMessage(nil, &m)
		f.Add(p)
		f.Add(p[:len(p)/2])
	}
	f.Add([]byte{})
	f.Add([]byte("hello"))
	f.Add([]byte{magic, version, byte(OpDelete)})
	f.Add([]byte(encode(OpDelete, "k", "")))
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := decodeAll(string(p))
		if err != nil {
			return
		}
		if len(m.keys) > maxKeysPerMessage || slices.Contains(m.keys, "") {
			t.Fatalf("decoded %d keys, an empty one %v; want at most %d, none empty", len(m.keys), slices.Contains(m.keys, ""), maxKeysPerMessage)
		}
		// Whatever decodes must encode and decode again to the same message.
		again, err := decodeAll(string(appendMessage(nil, &m)))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", m, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("re-decoded %+v, want %+v", again, m)
		}
	})
}

func TestDecodeMessageAllocs(t *testing.T) {
	p := string(appendMessage(nil, &message{op: OpDelete, origin: testOrigin, seq: 1, namespace: "ns", keys: []string{"a", "b", "c"}}))
	keys := make([]string, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		m, err := decodeMessage(p)
		if err != nil {
			t.Fatalf("decodeMessage = %+v, %v", m, err)
		}
		if keys = m.appendKeys(keys[:0]); len(keys) != 3 {
			t.Fatalf("appendKeys = %q, want 3 keys", keys)
		}
	})
	if allocs != 0 {
		t.Errorf("decodeMessage with a reused key slice allocates %v times, want 0", allocs)
	}
}

// TestBusMessageSendsClearForRejectedDelete: a delete that receivers would
// reject goes out as a clear of the namespace, which covers its keys, so
// no write a real writer announces is lost or leaves a sequence gap.
func TestBusMessageSendsClearForRejectedDelete(t *testing.T) {
	tests := []struct {
		name      string
		give      []string
		giveOp    Op
		wantOp    Op
		wantNKeys int
	}{
		{name: "delete", give: []string{"a", "b"}, giveOp: OpDelete, wantOp: OpDelete, wantNKeys: 2},
		{name: "most keys", give: slices.Repeat([]string{"k"}, maxKeysPerMessage), giveOp: OpDelete, wantOp: OpDelete, wantNKeys: maxKeysPerMessage},
		{name: "too many keys", give: slices.Repeat([]string{"k"}, maxKeysPerMessage+1), giveOp: OpDelete, wantOp: OpClear},
		{name: "empty key", give: []string{"a", ""}, giveOp: OpDelete, wantOp: OpClear},
		{name: "clear with keys", give: []string{"a"}, giveOp: OpClear, wantOp: OpClear},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Bus{nodeID: testOrigin}
			m, err := decodeMessage(string(b.Message("ns", tt.giveOp, tt.give)))
			if err != nil {
				t.Fatalf("decodeMessage(Message(%d keys)) error = %v", len(tt.give), err)
			}
			if m.op != tt.wantOp || m.nkeys != tt.wantNKeys || m.seq != 1 {
				t.Errorf("Message(%d keys) = op %d with %d keys, seq %d; want op %d with %d keys, seq 1", len(tt.give), m.op, m.nkeys, m.seq, tt.wantOp, tt.wantNKeys)
			}
		})
	}
}
