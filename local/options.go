package local

import (
	"fmt"
	"math/bits"
	"time"
)

// Options configures a [Cache]. The zero value is valid: every zero field
// means its default.
//
//	MaxCost      budget in cost units                 Default: 64 << 20.
//	NumCounters  ristretto admission counters         Default: 10 per KiB of MaxCost, within [1e4, 1e7].
//	EpochSlots   epoch table size (power of two)      Default: 1 << 16.
type Options struct {
	// MaxCost is the budget of the cache in the units passed as cost to
	// [Cache.Fill]; tiered passes encoded bytes. Ristretto evicts to stay
	// under it, and rejects an entry whose cost alone exceeds it. The cache
	// adds no per-entry overhead of its own to the cost. Default: 64 << 20.
	MaxCost int64

	// NumCounters is the number of access counters ristretto's admission
	// policy keeps; ristretto advises ten per entry the full cache holds.
	// The default assumes entries of about 1 KiB: 10 * MaxCost / 1024,
	// raised to 1e4 and capped at 1e7 (about 30 MB of counters). Default:
	// derived from MaxCost as described.
	NumCounters int64

	// EpochSlots is the number of per-key epoch counters, rounded up to a
	// power of two; each takes 16 bytes. Keys that share a slot cost each
	// other a miss when one is invalidated, so size it well above the number
	// of keys invalidated within one LocalTTL. At most 1 << 24. Default:
	// 1 << 16.
	EpochSlots int

	// KeepExpired is how long an entry is kept after its expiry, for
	// [Cache.GetExpired]; expired entries are otherwise deleted as soon as
	// a Get finds them. Default: 0.
	KeepExpired time.Duration
}

const (
	defaultMaxCost    = 64 << 20
	defaultEpochSlots = 1 << 16
	maxEpochSlots     = 1 << 24
	minNumCounters    = 10_000
	maxNumCounters    = 10_000_000
)

// withDefaults returns o with every zero field set to its default and
// EpochSlots rounded up to a power of two. It expects o to be valid.
func (o Options) withDefaults() Options {
	if o.MaxCost == 0 {
		o.MaxCost = defaultMaxCost
	}
	if o.NumCounters == 0 {
		o.NumCounters = min(max(10*(o.MaxCost/1024), minNumCounters), maxNumCounters)
	}
	if o.EpochSlots == 0 {
		o.EpochSlots = defaultEpochSlots
	}
	o.EpochSlots = 1 << bits.Len(uint(o.EpochSlots-1))
	return o
}

// validate reports the first field of o that no default can repair.
func (o Options) validate() error {
	switch {
	case o.MaxCost < 0:
		return fmt.Errorf("local: Options.MaxCost must be >= 0, got %d", o.MaxCost)
	case o.NumCounters < 0:
		return fmt.Errorf("local: Options.NumCounters must be >= 0, got %d", o.NumCounters)
	case o.EpochSlots < 0:
		return fmt.Errorf("local: Options.EpochSlots must be >= 0, got %d", o.EpochSlots)
	case o.KeepExpired < 0:
		return fmt.Errorf("local: Options.KeepExpired must be >= 0, got %v", o.KeepExpired)
	case o.EpochSlots > maxEpochSlots:
		return fmt.Errorf("local: Options.EpochSlots must be <= %d, got %d", maxEpochSlots, o.EpochSlots)
	}
	return nil
}
