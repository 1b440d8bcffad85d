package invalidation

import (
	"encoding/binary"
	"errors"
	"slices"
)

// Op is what an invalidation message asks every other node to do.
type Op uint8

const (
	// OpDelete drops the message's keys from every L1 registered for its
	// namespace.
	OpDelete Op = 1
	// OpClear drops everything from every L1 registered for its namespace.
	OpClear Op = 2
	// opHeartbeat carries no namespace or keys. Hearing our own proves the
	// publish-to-subscribe path works; a peer's advances its sequence.
	opHeartbeat Op = 3
	// opAck acknowledges confirmed messages to their writer, on the
	// writer's heartbeat channel: its keys are the acknowledged sequence
	// numbers, 8 bytes each, big endian (see confirm.go).
	opAck Op = 4
	// opFilled tells every bus that another node filled its keys in L2
	// while some node waited on its lease (see [Bus.FilledMessage]). It is
	// not numbered: missing one costs a waiter a poll, nothing more.
	opFilled Op = 5
)

// flagConfirm, in the op byte of a delete or clear, asks every bus that
// applies the message to acknowledge it (a confirmed write).
const flagConfirm byte = 0x80

// Wire format, all integers unsigned:
//
//	magic       1 byte   0xB7: tells our messages from other traffic on the channel
//	version     1 byte   1
//	op          1 byte   OpDelete, OpClear, opHeartbeat, opAck or opFilled; flagConfirm on a delete or clear asks for acks
//	origin     16 bytes  the sender's node id
//	seq        uvarint   the sender's sequence number, from 1: one series for its invalidations, another for its heartbeats
//	sent        8 bytes  the sender's clock at encoding, unix nanoseconds, big endian
//	namespace  uvarint length, then bytes
//	key count  uvarint, at most maxKeysPerMessage
//	keys       each a uvarint length (not zero), then bytes
//
// Nothing may follow the last key.
const (
	magic     = 0xB7
	version   = 1
	nodeIDLen = 16
	headerLen = 3 + nodeIDLen
)

// maxKeysPerMessage bounds the keys of one message. Every node that handles
// a message's namespace decodes its keys into a slice, 16 bytes a key
// however short the key is on the wire, so without a bound one message of
// 1-byte keys, which anyone who can publish on the channel can send, costs
// every node 8 times its size: 256 MB for the 32 MB that Redis's default
// output buffer limit still lets reach a subscriber. The bound caps the
// slice at 1 MiB. Writers fit under it: [Bus.Message] sends a larger delete
// as a clear of the namespace (see there), so no real write is rejected,
// which would leave peers stale until its sequence gap expired. A batch
// of 65,536 keys is a bulk load, one script of as many SETs that holds a
// Redis server for about a quarter of a second; after one that large,
// peers refilling a cleared L1 from L2 cost little more than deleting the
// keys one by one.
const maxKeysPerMessage = 1 << 16

var (
	// errForeign marks bytes that are not ours: another magic or version.
	errForeign = errors.New("invalidation: foreign message")
	// errMalformed marks bytes that claim to be ours but do not parse.
	errMalformed = errors.New("invalidation: malformed message")
)

// message is one invalidation or heartbeat. Decoded strings are substrings
// of the payload, so decoding copies no bytes.
type message struct {
	op        Op
	confirm   bool   // flagConfirm: acknowledge it to origin once applied
	origin    string // nodeIDLen raw bytes
	seq       uint64
	sent      int64 // unix nanoseconds by the sender's clock
	namespace string
	keys      []string // the keys to encode; decodeMessage leaves it nil

	// Set by decodeMessage: the keys stay encoded until appendKeys, so a
	// node with no handler for the namespace never decodes them.
	nkeys   int    // how many keys
	rawKeys string // their encoding, checked
}

// appendMessage appends the encoding of m to dst. m.origin must be
// nodeIDLen bytes long.
func appendMessage(dst []byte, m *message) []byte {
	n := headerLen + binary.MaxVarintLen64 + 8 + uvarintLen(uint64(len(m.namespace))) +
		len(m.namespace) + uvarintLen(uint64(len(m.keys)))
	for _, k := range m.keys {
		n += uvarintLen(uint64(len(k))) + len(k)
	}
	if dst == nil {
		dst = make([]byte, 0, n)
	}
	op := byte(m.op)
	if m.confirm {
		op |= flagConfirm
	}
	dst = append(dst, magic, version, op)
	dst = append(dst, m.origin...)
	dst = binary.AppendUvarint(dst, m.seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.sent))
	dst = appendString(dst, m.namespace)
	dst = binary.AppendUvarint(dst, uint64(len(m.keys)))
	for _, k := range m.keys {
		dst = appendString(dst, k)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// decodeMessage parses p and checks all of it, the keys included, but
// leaves the keys encoded: [message.appendKeys] collects them. It returns
// errForeign or errMalformed, and never panics, whatever p holds. A
// message with an empty key or with more than maxKeysPerMessage keys is
// malformed: no writer sends one.
func decodeMessage(p string) (message, error) {
	if len(p) == 0 || p[0] != magic {
		return message{}, errForeign
	}
	if len(p) < 2 {
		return message{}, errMalformed
	}
	if p[1] != version {
		return message{}, errForeign
	}
	if len(p) < headerLen {
		return message{}, errMalformed
	}
	m := message{op: Op(p[2] &^ flagConfirm), confirm: p[2]&flagConfirm != 0, origin: p[3:headerLen]}
	if m.op < OpDelete || m.op > opFilled || m.confirm && m.op != OpDelete && m.op != OpClear {
		return message{}, errMalformed
	}
	r := reader{s: p[headerLen:]}
	m.seq = r.uvarint()
	m.sent = int64(r.uint64())
	m.namespace = r.string()
	n := r.uvarint()
	// Every key takes at least two bytes, its length and one byte, so a
	// count above half the bytes left is a lie.
	if r.bad || n > maxKeysPerMessage || n > uint64(len(r.s))/2 {
		return message{}, errMalformed
	}
	m.nkeys, m.rawKeys = int(n), r.s
	for range n {
		if r.string() == "" { // also after an error
			return message{}, errMalformed
		}
	}
	if len(r.s) != 0 {
		return message{}, errMalformed
	}
	return m, nil
}

// appendKeys appends the keys of m, which decodeMessage checked, to dst and
// returns the extended slice. The keys are substrings of the payload.
func (m *message) appendKeys(dst []string) []string {
	r := reader{s: m.rawKeys}
	dst = slices.Grow(dst, m.nkeys)
	for range m.nkeys {
		dst = append(dst, r.string())
	}
	return dst
}

// reader consumes a string front to back. After the first error, bad is set
// and every further read returns a zero value.
type reader struct {
	s   string
	bad bool
}

func (r *reader) uvarint() uint64 {
	var x uint64
	var shift uint
	for i := 0; i < len(r.s) && i < binary.MaxVarintLen64; i++ {
		c := r.s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break // overflows 64 bits
			}
			r.s = r.s[i+1:]
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	r.bad = true
	r.s = ""
	return 0
}

func (r *reader) uint64() uint64 {
	if len(r.s) < 8 {
		r.bad = true
		r.s = ""
		return 0
	}
	x := uint64(0)
	for i := range 8 {
		x = x<<8 | uint64(r.s[i])
	}
	r.s = r.s[8:]
	return x
}

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.s)) {
		r.bad = true
		r.s = ""
		return ""
	}
	v := r.s[:n]
	r.s = r.s[n:]
	return v
}
