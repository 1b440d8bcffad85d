package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// trial is one staleness trial: the time from A's write returning to B's
// first read of the new value, or fresh == false if B never saw it within
// the cap.
type trial struct {
	d     time.Duration
	fresh bool
}

const (
	// maxPolls bounds B's read loop by count as well as by the cap.
	maxPolls = 100_000_000
	// settle is how long B keeps its warm copy before A writes. A write of
	// the old value may still have an invalidation in flight to B (tiercache
	// announces every Set); waiting it out means B holds the old value for
	// real when the timed write starts. There is no signal to wait on, so B
	// polls its local tier for this long.
	settle = 10 * time.Millisecond
	// concurrentTrials is how many trials run at once for a library without
	// cross-node invalidation: each of them waits out the whole cap.
	concurrentTrials = 50
)

// staleTrial runs one trial on key: A writes "old", B caches it, A writes
// "new", and B reads until it sees "new" or cap passes.
func staleTrial(ctx context.Context, lib library, a, b node, key string, cap time.Duration) (trial, error) {
	if err := a.write(ctx, key, "old"); err != nil {
		return trial{}, fmt.Errorf("%s: write old: %w", lib.name, err)
	}
	if err := warm(ctx, b, lib, key, "old", cap); err != nil {
		return trial{}, err
	}
	for end := time.Now().Add(settle); time.Now().Before(end); {
		if _, _, err := b.probe(ctx, key); err != nil {
			return trial{}, fmt.Errorf("%s: settle read: %w", lib.name, err)
		}
	}
	if err := warm(ctx, b, lib, key, "old", cap); err != nil {
		return trial{}, err
	}
	if err := a.write(ctx, key, "new"); err != nil {
		return trial{}, fmt.Errorf("%s: write new: %w", lib.name, err)
	}
	t0 := time.Now()
	deadline := t0.Add(cap)
	for i := 0; i < maxPolls; i++ {
		v, err := b.get(ctx, key)
		now := time.Now()
		if err == nil && v == "new" {
			return trial{d: now.Sub(t0), fresh: true}, nil
		}
		if now.After(deadline) || ctx.Err() != nil {
			break
		}
	}
	return trial{d: cap, fresh: false}, ctx.Err()
}

// measureStaleness runs n trials, each on its own key so no trial sees
// another's invalidations. Libraries that invalidate run one trial at a
// time; the others run concurrentTrials at a time, since every trial lasts
// the whole cap.
func measureStaleness(ctx context.Context, lib library, a, b node, n int, cap time.Duration, run string) ([]trial, error) {
	trials := make([]trial, n)
	par := 1
	if !lib.invalidates {
		par = concurrentTrials
	}
	for start := 0; start < n; start += par {
		end := min(start+par, n)
		var wg sync.WaitGroup
		errs := make([]error, end-start)
		for i := start; i < end; i++ {
			wg.Go(func() {
				key := fmt.Sprintf("stale:%s:%d", run, i)
				trials[i], errs[i-start] = staleTrial(ctx, lib, a, b, key, cap)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
	}
	return trials, nil
}
