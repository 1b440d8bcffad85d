package tiered

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ChooseTTL sets how long the answer a loader gives for key is cached: the
// value it returns, or its [ErrNotFound]. Call it from inside a [Loader] or
// [BatchLoader], with the context the loader was given, before returning;
// a batch loader calls it once per key it wants to differ. The chosen TTL
// is the L2 lifetime, used exactly (no jitter); L1 keeps it as a cap on
// [Options.LocalTTL], as for any value. A ttl <= 0 caches the answer
// nowhere: it is returned to the callers waiting on the load and
// forgotten. Keys the loader says nothing about get [Options.TTL] (or
// [Options.NegativeTTL] for not-found answers), jittered as usual.
//
// ChooseTTL reports whether it took effect: false when ctx is not a
// loader's context of this package, or key is not one the load is for.
// The last call for a key wins. It is safe to call from goroutines the
// loader starts, until the loader returns.
func ChooseTTL(ctx context.Context, key string, ttl time.Duration) bool {
	ch, _ := ctx.Value(ttlChoicesKey{}).(*ttlChoices)
	if ch == nil {
		return false
	}
	return ch.choose(key, ttl)
}

type ttlChoicesKey struct{}

// ttlChoices collects a load's ChooseTTL calls.
type ttlChoices struct {
	keys []string // the load's keys; few, so a scan is cheapest
	mu   sync.Mutex
	ttls map[string]time.Duration
	done bool // the load stopped listening: later calls are refused
}

func (ch *ttlChoices) choose(key string, ttl time.Duration) bool {
	known := false
	for _, k := range ch.keys {
		if k == key {
			known = true
			break
		}
	}
	if !known {
		return false
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.done {
		return false
	}
	if ch.ttls == nil {
		ch.ttls = make(map[string]time.Duration, 1)
	}
	ch.ttls[key] = ttl
	return true
}

// take ends the collection and returns what was chosen.
func (ch *ttlChoices) take() map[string]time.Duration {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.done = true
	return ch.ttls
}

// WriteOption changes one [Cache.Set] or [Cache.SetMany] call.
type WriteOption func(*writeConfig)

type writeConfig struct {
	ttl     time.Duration // the TTL to write, when set
	set     bool          // WithTTL was given
	confirm bool          // Confirm was given
}

// Confirm makes a Set or SetMany confirmed, as every write of a cache with
// [Options.ConfirmWrites] is: it returns only once no node can serve the
// values it replaced (see [Options.ConfirmWrites]).
func Confirm() WriteOption {
	return func(w *writeConfig) { w.confirm = true }
}

// WithTTL makes a Set or SetMany write its values for ttl instead of
// [Options.TTL], exactly (no jitter). L1 keeps it as a cap on
// [Options.LocalTTL]. A ttl <= 0 is an error: the write is refused before
// anything is sent.
func WithTTL(ttl time.Duration) WriteOption {
	return func(w *writeConfig) { w.ttl = ttl; w.set = true }
}

func (w *writeConfig) check() error {
	if w.set && w.ttl <= 0 {
		return &OptionError{Option: "WithTTL", Reason: fmt.Sprintf("ttl must be positive, got %v", w.ttl)}
	}
	return nil
}

// OptionError reports a bad option: a field of the [Options] given to
// [New] (which reports every bad field at once, joined), or a per-call
// option such as [WithTTL] with a ttl <= 0. The call that got it did
// nothing. It comes wrapped in the operation ("tiered new: ..."); match it
// with errors.As.
type OptionError struct {
	Option string // "Options.LocalTTL", "WithTTL"
	Reason string
}

func (e *OptionError) Error() string { return e.Option + ": " + e.Reason }
