package invalidation

import (
	"cmp"
	"slices"
	"strings"

	"github.com/tiercache/tiercache/internal/saturate"
)

const (
	// maxPeers bounds the peer table; past it, the peer heard from least
	// recently is forgotten (its next message sets a new baseline).
	maxPeers = 4096
	// maxMissing bounds the open gaps of one peer. Concurrent writes reorder
	// a peer's messages by at most its number of in-flight writes (its pool
	// size, typically well under a thousand); a larger jump means messages
	// were lost, and the caller clears at once instead of tracking them.
	maxMissing = 1024
)

// peerTable tracks, per peer node, which of its sequence numbers are still
// missing, to detect a lost message. It is not safe for concurrent use; the
// Bus guards it with its mutex. Times are monotonic nanoseconds.
type peerTable struct {
	m    map[string]*peer // by origin node id
	gaps int              // peers with a non-empty missing list
}

type peer struct {
	high    uint64 // highest sequence number seen; 0 while only heartbeats were
	missing []gap  // sequence numbers below high not seen yet, ascending
	seen    int64  // when the last message arrived
}

// gap is one missing sequence number and when it was noticed. Numbers are
// noticed in increasing order, so missing is ascending in both fields and
// missing[0] is always the oldest.
type gap struct {
	seq uint64
	at  int64
}

// see records message seq from origin arriving at now. opened reports that
// the peer had no open gap and now has one, so the next expiry may be
// earlier than planned. overflow reports a jump past maxMissing: the caller
// must clear now; the peer starts over from seq.
func (t *peerTable) see(origin string, seq uint64, now int64) (opened, overflow bool) {
	p := t.m[origin]
	if p == nil {
		t.add(origin, &peer{high: seq, seen: now})
		return false, false
	}
	p.seen = now
	if p.high == 0 { // known from heartbeats only: this sets the baseline
		p.high = seq
		return false, false
	}
	if seq <= p.high {
		// Late (closes a gap) or duplicate (no-op).
		if i, ok := slices.BinarySearchFunc(p.missing, seq, cmpSeq); ok {
			p.missing = slices.Delete(p.missing, i, i+1)
			if len(p.missing) == 0 {
				t.gaps--
			}
		}
		return false, false
	}
	n := seq - p.high - 1
	if n > uint64(maxMissing-len(p.missing)) {
		t.resync(p, seq)
		return false, true
	}
	if n > 0 && len(p.missing) == 0 {
		t.gaps++
		opened = true
	}
	for s := p.high + 1; s < seq; s++ {
		p.missing = append(p.missing, gap{seq: s, at: now})
	}
	p.high = seq
	return opened, false
}

// touch records that origin is alive (a heartbeat), without a sequence
// number: heartbeats are numbered apart from invalidations.
func (t *peerTable) touch(origin string, now int64) {
	if p := t.m[origin]; p != nil {
		p.seen = now
		return
	}
	t.add(origin, &peer{seen: now})
}

func cmpSeq(g gap, seq uint64) int { return cmp.Compare(g.seq, seq) }

func (t *peerTable) add(origin string, p *peer) {
	if t.m == nil {
		t.m = make(map[string]*peer)
	}
	if len(t.m) >= maxPeers {
		var oldest string
		for id, q := range t.m {
			if oldest == "" || q.seen < t.m[oldest].seen {
				oldest = id
			}
		}
		t.remove(oldest)
	}
	// The origin is a substring of a payload; clone it so the table does not
	// pin the whole message.
	t.m[strings.Clone(origin)] = p
}

func (t *peerTable) remove(id string) {
	if len(t.m[id].missing) > 0 {
		t.gaps--
	}
	delete(t.m, id)
}

// resync writes off every open gap of p and makes seq its new baseline.
func (t *peerTable) resync(p *peer, seq uint64) {
	if len(p.missing) > 0 {
		t.gaps--
	}
	p.missing = p.missing[:0]
	p.high = seq
}

// expire writes off the gaps noticed at or before now-grace and returns how
// many peers had one. The caller clears every L1 if it is not zero.
func (t *peerTable) expire(now, grace int64) int {
	if t.gaps == 0 {
		return 0
	}
	n := 0
	for _, p := range t.m {
		i := 0
		for i < len(p.missing) && saturate.Add(p.missing[i].at, grace) <= now {
			i++
		}
		if i == 0 {
			continue
		}
		n += i
		p.missing = slices.Delete(p.missing, 0, i)
		if len(p.missing) == 0 {
			t.gaps--
		}
	}
	return n
}

// oldestGap returns when the oldest open gap was noticed, or ok false if
// none is open.
func (t *peerTable) oldestGap() (at int64, ok bool) {
	if t.gaps == 0 {
		return 0, false
	}
	for _, p := range t.m {
		if len(p.missing) > 0 && (!ok || p.missing[0].at < at) {
			at, ok = p.missing[0].at, true
		}
	}
	return at, ok
}

// sweep forgets the peers not heard from since before idleBefore.
func (t *peerTable) sweep(idleBefore int64) {
	for id, p := range t.m {
		if p.seen < idleBefore {
			t.remove(id)
		}
	}
}

// reset forgets every peer. After a reconnect, what was lost meanwhile has
// been cleared, and old baselines would only report the loss again.
func (t *peerTable) reset() {
	clear(t.m)
	t.gaps = 0
}

// maxFailedWrites bounds the own messages of failed writes a bus applies
// when they come back. A write that lands after that many further writes
// failed is not applied on its own node when it lands; the node's L1 then
// holds the old value until LocalTTL.
const maxFailedWrites = 4096

// failedWrites holds the sequence numbers of the last maxFailedWrites own
// messages whose writes failed. A number stays after its message comes
// back: on Cluster each node written sends a copy, and a late node's copy
// may follow an early one's. It is guarded by Bus.mu.
type failedWrites struct {
	m    map[uint64]struct{}
	ring []uint64 // the numbers in m, oldest at next once full
	next int
}

func (f *failedWrites) add(seq uint64) {
	if f.m == nil {
		f.m = make(map[uint64]struct{})
	}
	if len(f.ring) < maxFailedWrites {
		f.ring = append(f.ring, seq)
	} else {
		delete(f.m, f.ring[f.next])
		f.ring[f.next] = seq
		f.next = (f.next + 1) % maxFailedWrites
	}
	f.m[seq] = struct{}{}
}

func (f *failedWrites) has(seq uint64) bool {
	_, ok := f.m[seq]
	return ok
}
