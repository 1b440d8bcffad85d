package local

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// gateShards is the number of counter shards of a gate.
const gateShards = 64

// gateShard counts the calls that entered and left ristretto through it. It
// fills 128 bytes so that no two shards share a cache line, nor the pair of
// lines some CPUs prefetch together.
type gateShard struct {
	enter atomic.Uint64
	exit  atomic.Uint64
	// misses counts the Gets through this shard that missed, bumped after
	// exit. It lives here because a Get has just written this line anyway.
	misses atomic.Uint64
	_      [128 - 3*8]byte
}

// gate keeps ristretto's Close from running while another call is inside
// ristretto (that panics or hangs: see the package doc), without a lock on the hit
// path. A call does enter.Add(1), loads the cache's closed flag, calls
// ristretto only if it is false, then does exit.Add(1). Close stores closed =
// true and then calls drain.
//
// This is correct because Go's atomics are sequentially consistent. A call
// that saw closed == false did its enter.Add before Close stored closed, so
// every load of enter that drain makes counts it. drain loads exit before
// enter: exit never exceeds enter, and enter only grows, so seeing them equal
// means that at the moment exit was loaded every call that had entered had
// left. (Loading enter first could miss a call still inside: a latecomer that
// saw closed == true could enter and leave in between, raising exit to the
// old enter.)
type gate [gateShards]gateShard

// shard returns the shard the calling goroutine uses, chosen by hashing the
// address of a variable on its stack. Goroutines have distinct stacks, so
// goroutines running at the same time rarely share a shard, even when they
// all read one hot key; a goroutine calling from the same place keeps its
// shard in its CPU's cache. Sharding by key hash instead made every reader
// of a hot key write the same cache line: measured with two goroutines on
// two cores (BenchmarkHit/mode=parallel-hot), a hot-key hit took 1.7x raw
// ristretto's time that way, and 1.1x this way. The caller must use the returned shard for both enter and
// exit; a stack that moves in between does not matter, since the shard is
// not on it.
func (g *gate) shard() *gateShard {
	var probe byte
	// Fibonacci hashing: the top 6 bits of the product depend on every bit
	// of the address.
	return &g[uint64(uintptr(unsafe.Pointer(&probe)))*0x9e3779b97f4a7c15>>(64-6)]
}

// drain returns once no call that entered before closed was set is still
// inside. It polls: calls inside ristretto are short (a Set never blocks,
// Wait waits only for ristretto's own goroutine) and Close is rare, so a
// wake-up channel on the hit path would cost more than spinning here, and
// runtime.Gosched lets those calls run on a busy machine.
func (g *gate) drain() {
	for i := range g {
		s := &g[i]
		for s.exit.Load() != s.enter.Load() {
			runtime.Gosched()
		}
	}
}

// exits returns the number of calls that left through g, and misses the
// number of those that were Gets that missed. It loads misses first: a miss
// is counted after its exit, so the result never has misses > exits.
func (g *gate) exits() (exits, misses uint64) {
	for i := range g {
		misses += g[i].misses.Load()
	}
	for i := range g {
		exits += g[i].exit.Load()
	}
	return exits, misses
}
