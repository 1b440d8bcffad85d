package invalidation

import (
	"fmt"
	"testing"
)

func TestPeerTableGaps(t *testing.T) {
	const a, b = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
	type step struct {
		origin string
		seq    uint64
		now    int64
	}
	tests := []struct {
		name  string
		give  []step
		grace int64
		at    int64  // expire at this time
		want  string // opened/overflow per step, then gaps left and peers expired
	}{
		{name: "in order", give: []step{{a, 1, 0}, {a, 2, 0}, {a, 3, 0}}, grace: 10, at: 100, want: "-- -- -- open=0 expired=0"},
		{name: "baseline anywhere", give: []step{{a, 500, 0}, {a, 501, 0}}, grace: 10, at: 100, want: "-- -- open=0 expired=0"},
		{name: "reordered", give: []step{{a, 1, 0}, {a, 3, 0}, {a, 2, 1}}, grace: 10, at: 100, want: "-- o- -- open=0 expired=0"},
		{name: "duplicate", give: []step{{a, 1, 0}, {a, 2, 0}, {a, 2, 0}, {a, 1, 0}}, grace: 10, at: 100, want: "-- -- -- -- open=0 expired=0"},
		{name: "gap before grace", give: []step{{a, 1, 0}, {a, 3, 0}}, grace: 10, at: 9, want: "-- o- open=1 expired=0"},
		{name: "gap after grace", give: []step{{a, 1, 0}, {a, 3, 0}}, grace: 10, at: 10, want: "-- o- open=0 expired=1"},
		{name: "only old gaps expire", give: []step{{a, 1, 0}, {a, 3, 0}, {a, 5, 8}}, grace: 10, at: 10, want: "-- o- -- open=1 expired=1"},
		{name: "two peers", give: []step{{a, 1, 0}, {b, 1, 0}, {a, 4, 0}, {b, 3, 0}, {a, 2, 1}, {a, 3, 1}}, grace: 10, at: 50, want: "-- -- o- o- -- -- open=0 expired=1"},
		{name: "largest tracked gap", give: []step{{a, 1, 0}, {a, 2 + maxMissing, 0}}, grace: 10, at: 100, want: "-- o- open=0 expired=1024"},
		{name: "overflow resyncs", give: []step{{a, 1, 0}, {a, 3 + maxMissing, 0}, {a, 4 + maxMissing, 0}}, grace: 10, at: 100, want: "-- -x -- open=0 expired=0"},
		{name: "overflow counts open gaps", give: []step{{a, 1, 0}, {a, 3, 0}, {a, 4 + maxMissing, 0}}, grace: 10, at: 100, want: "-- o- -x open=0 expired=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pt peerTable
			got := ""
			for _, s := range tt.give {
				opened, overflow := pt.see(s.origin, s.seq, s.now)
				got += flag(opened, "o") + flag(overflow, "x") + " "
			}
			expired := pt.expire(tt.at, tt.grace)
			got += fmt.Sprintf("open=%d expired=%d", pt.gaps, expired)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func flag(b bool, s string) string {
	if b {
		return s
	}
	return "-"
}

func TestPeerTableOldestGapAndSweep(t *testing.T) {
	var pt peerTable
	pt.see("a", 1, 0)
	pt.see("b", 1, 0)
	if _, ok := pt.oldestGap(); ok {
		t.Errorf("oldestGap() ok with no gap open")
	}
	pt.see("a", 3, 7)
	pt.see("b", 3, 5)
	if at, ok := pt.oldestGap(); !ok || at != 5 {
		t.Errorf("oldestGap() = %d, %v, want 5, true", at, ok)
	}
	pt.see("b", 4, 20)
	pt.sweep(10) // forgets a, seen last at 7
	if _, ok := pt.m["a"]; ok || len(pt.m) != 1 || pt.gaps != 1 {
		t.Errorf("after sweep: peers %d, gaps %d, a present %v; want 1, 1, false", len(pt.m), pt.gaps, ok)
	}
	pt.reset()
	if len(pt.m) != 0 || pt.gaps != 0 {
		t.Errorf("after reset: peers %d, gaps %d; want 0, 0", len(pt.m), pt.gaps)
	}
}

func TestPeerTableBounded(t *testing.T) {
	var pt peerTable
	for i := range maxPeers + 10 {
		pt.see(fmt.Sprintf("%016d", i), 1, int64(i))
	}
	if len(pt.m) != maxPeers {
		t.Errorf("peers = %d, want %d", len(pt.m), maxPeers)
	}
	if _, ok := pt.m[fmt.Sprintf("%016d", 0)]; ok {
		t.Errorf("least recently seen peer still present")
	}
}

// TestPeerTouchSetsNoBaseline: a peer first known from its heartbeats takes
// its first invalidation as the baseline, so heartbeats (numbered apart)
// never open gaps.
func TestPeerTouchSetsNoBaseline(t *testing.T) {
	var pt peerTable
	pt.touch("a", 0)
	pt.touch("a", 1)
	if opened, overflow := pt.see("a", 5, 2); opened || overflow {
		t.Errorf("see(5) after heartbeats only = opened %v, overflow %v; want neither", opened, overflow)
	}
	if opened, _ := pt.see("a", 7, 3); !opened {
		t.Errorf("see(7) after 5 did not open a gap")
	}
	if n := pt.expire(100, 10); n != 1 {
		t.Errorf("expire = %d, want 1 (message 6)", n)
	}
}
