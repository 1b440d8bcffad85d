package invalidation

import (
	"encoding/binary"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// craftedOrigin is the node id of the crafted messages, apart from
// testOrigin's, so that they share no sequence with the marker.
var craftedOrigin = strings.Repeat("\x02", nodeIDLen)

// crafted encodes a delete in namespace "ns" of n copies of key, about
// n*(1+len(key)) bytes, without building a slice of n keys. It relies on
// the key count being the last byte of a message with no keys.
func crafted(n int, key string) []byte {
	p := appendMessage(nil, &message{op: OpDelete, origin: craftedOrigin, seq: 1, sent: time.Now().UnixNano(), namespace: "ns"})
	p = binary.AppendUvarint(p[:len(p)-1], uint64(n))
	for range n {
		p = appendString(p, key)
	}
	return p
}

// liveHeap returns the bytes of heap objects alive after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestCraftedMessageRetainsNoHeap: one message of about 2 MB that a peer
// crafted, of empty keys or of more keys than a message may carry, is
// counted as malformed, and leaves nothing the size of its keys on the heap
// once a later message is applied. The receive loop used to decode it,
// keep the key slice for reuse (16 bytes per key, so 16 times the payload
// for empty keys) and hold it for the life of the bus.
func TestCraftedMessageRetainsNoHeap(t *testing.T) {
	// Generous for the go-redis buffers and timers that come and go (about
	// 0.3 MiB is measured), and far below the 17 and 33 MiB the key slices
	// of these messages held before.
	const maxRetained = 1 << 20
	s := redistest.Real(t)
	tests := []struct {
		name string
		give []byte
	}{
		{name: "empty keys", give: crafted(2<<20, "")},
		{name: "too many keys", give: crafted(1<<20, "k")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t, s, Options{})
			register(t, b, "ns")
			marker := register(t, b, "marker")
			raw := s.Client(t)
			before := liveHeap()
			// The marker comes after the crafted message on the same
			// connection, so once it is applied the crafted one has been
			// handled, whichever way.
			publish(t, raw, b.Channel(), tt.give, appendMessage(nil, &message{
				op: OpDelete, origin: testOrigin, seq: 1, namespace: "marker", keys: []string{"m"}}))
			waitFor(t, "the marker", func() bool { _, n, _ := marker.counts(); return n == 1 })
			retained := liveHeap() - before
			t.Logf("%d-byte message: heap retained %.1f MiB", len(tt.give), float64(retained)/(1<<20))
			if retained > maxRetained {
				t.Errorf("heap retained after one %d-byte message = %d bytes, want at most %d", len(tt.give), retained, maxRetained)
			}
			if st := b.Stats(); st.Malformed != 1 {
				t.Errorf("Stats().Malformed = %d, want 1", st.Malformed)
			}
		})
	}
}

// keysOf returns n distinct keys.
func keysOf(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	return keys
}

// TestReceiveKeepsOnlySmallKeySlice: the bus keeps its key slice between
// messages only while it is small, and keeps no key in it, since a key
// pins the whole payload it is a substring of.
func TestReceiveKeepsOnlySmallKeySlice(t *testing.T) {
	tests := []struct {
		name     string
		give     int // keys in the message
		wantKept bool
	}{
		{name: "one key", give: 1, wantKept: true},
		{name: "a batch", give: 100, wantKept: true},
		{name: "more than kept", give: maxKeptKeys + 1, wantKept: false},
		{name: "most a message carries", give: maxKeysPerMessage, wantKept: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, r := testBus(t, Options{})
			b.receive(string(appendMessage(nil, &message{op: OpDelete, origin: craftedOrigin, seq: 1, namespace: "ns", keys: keysOf(tt.give)})))
			if _, n, _ := r.counts(); n != tt.give {
				t.Errorf("handler got %d keys, want %d", n, tt.give)
			}
			kept := b.keys[:cap(b.keys)]
			if got := len(kept) > 0; got != tt.wantKept {
				t.Errorf("after %d keys the bus keeps a slice of capacity %d; want one kept: %v", tt.give, len(kept), tt.wantKept)
			}
			if i := slices.IndexFunc(kept, func(k string) bool { return k != "" }); i >= 0 {
				t.Errorf("kept slice holds key %q at %d, which pins its payload", kept[i], i)
			}
		})
	}
}

// TestReceiveSkipsKeysOfOtherNamespaces: the keys of a delete for a
// namespace with no handler on the bus are never decoded, while its
// sequence number is tracked as any other, so a gap still shows.
func TestReceiveSkipsKeysOfOtherNamespaces(t *testing.T) {
	b, r := testBus(t, Options{})
	for _, seq := range []uint64{1, 3} { // 2 lost
		b.receive(string(appendMessage(nil, &message{op: OpDelete, origin: craftedOrigin, seq: seq, namespace: "other", keys: keysOf(100)})))
	}
	if c := cap(b.keys); c != 0 {
		t.Errorf("after deletes for a namespace with no handler the key slice has capacity %d, want 0: the keys were decoded", c)
	}
	if _, n, all := r.counts(); n != 0 || all != 0 {
		t.Errorf("handler of ns got %d keys, %d clears; want none", n, all)
	}
	if st := b.Stats(); st.Received != 2 || st.ReceivedKeys != 200 || st.Malformed != 0 {
		t.Errorf("Stats() Received, ReceivedKeys, Malformed = %d, %d, %d; want 2, 200, 0", st.Received, st.ReceivedKeys, st.Malformed)
	}
	b.mu.Lock()
	open := b.peers.gaps
	b.mu.Unlock()
	if open != 1 {
		t.Errorf("open gaps = %d after seq 1 and 3 of another namespace, want 1", open)
	}
}
