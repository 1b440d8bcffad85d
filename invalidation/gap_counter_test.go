package invalidation

import (
	"testing"
	"time"
)

// TestSequenceGapsCountsPeersNotMessages: Stats.SequenceGaps is
// documented as "peers' missing messages given up on" (metric help:
// "Messages from a peer found missing"), but checkLocked adds the number of
// PEERS whose gaps expired, so 8 lost messages count as 1.
func TestSequenceGapsCountsPeersNotMessages(t *testing.T) {
	b, _ := testBus(t, Options{MaxStaleness: time.Second, GapGrace: 100 * time.Millisecond})
	m := message{op: OpDelete, origin: "peerpeerpeerpeer", namespace: "ns", keys: []string{"k"}}
	now := time.Now()
	for _, seq := range []uint64{1, 10} { // 2..9 lost: 8 messages
		m.seq = seq
		d := decoded(t, m)
		b.applyLocked(&d, now)
	}
	at := int64(now.Sub(b.start))
	b.checkLocked(at + int64(100*time.Millisecond))
	if got := b.Stats().SequenceGaps; got != 8 {
		t.Errorf("SequenceGaps = %d after 8 messages of one peer were given up on, want 8", got)
	}
}
