package invalidation

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// craftedOrigin is the node id of messages from a peer that is not a Bus.
var craftedOrigin = strings.Repeat("\x02", nodeIDLen)

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
		{name: "many", give: 1 << 16, wantKept: false},
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
