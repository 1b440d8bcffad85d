package tiered

import (
	"sync"
	"time"
)

// result is the outcome of one key's load.
type result[V any] struct {
	val V
	neg bool // the key has no value (ErrNotFound)
	err error
}

// flight is one key's load in progress. done is closed once res is set.
type flight[V any] struct {
	done  chan struct{}
	res   result[V]
	start time.Time // when the flight was claimed; read by claim, under mu
}

// flights coalesces loads per key, for single keys and batches alike.
//
// x/sync/singleflight cannot serve here: a batch must claim many keys at
// once and learn, synchronously, which of them it leads and which are
// already being loaded by someone else, so that its loader is called once
// with exactly the keys nobody is loading.
type flights[V any] struct {
	mu sync.Mutex
	m  map[string]*flight[V] // guards: mu
}

// claim returns, for each key, the flight to wait on, and the keys (in
// order) whose flights this caller now leads and must finish.
//
// maxAge > 0 limits joining to flights claimed less than maxAge ago; an
// older one is replaced by a new flight this caller leads (the old one
// still finishes for its own waiters). Callers pass the staleness bound
// while the bus cannot hear invalidations: a write it does not hear cannot
// detach the flights that began before it, so only their age can.
func (g *flights[V]) claim(keys []string, maxAge time.Duration) (fs []*flight[V], led []string, ledFs []*flight[V]) {
	fs = make([]*flight[V], len(keys))
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[string]*flight[V])
	}
	for i, k := range keys {
		if f, ok := g.m[k]; ok && (maxAge <= 0 || now.Sub(f.start) < maxAge) {
			fs[i] = f
			continue
		}
		f := &flight[V]{done: make(chan struct{}), start: now}
		g.m[k] = f
		fs[i] = f
		led = append(led, k)
		ledFs = append(ledFs, f)
	}
	return fs, led, ledFs
}

// finish publishes the result of a led flight and removes it from the
// table, unless forget already replaced it.
func (g *flights[V]) finish(key string, f *flight[V], r result[V]) {
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	f.res = r
	close(f.done)
}

// forget detaches the keys' flights, so a caller that arrives after an
// invalidation starts a new load instead of joining one that began before it.
func (g *flights[V]) forget(keys []string) {
	g.mu.Lock()
	for _, k := range keys {
		delete(g.m, k)
	}
	g.mu.Unlock()
}

// forgetAll detaches every flight (namespace clear, lost liveness).
func (g *flights[V]) forgetAll() {
	g.mu.Lock()
	clear(g.m)
	g.mu.Unlock()
}
