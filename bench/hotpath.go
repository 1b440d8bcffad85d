package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// hotResult is one hot-path case: one library, one goroutine count.
type hotResult struct {
	goroutines int
	ops        int64
	elapsed    time.Duration
	mallocs    uint64
	errors     int64
}

// nsPerOp is wall time over total operations, as testing.B.RunParallel
// reports it: with several goroutines it is the inverse of throughput.
func (r hotResult) nsPerOp() float64 {
	if r.ops == 0 {
		return 0
	}
	return float64(r.elapsed.Nanoseconds()) / float64(r.ops)
}

func (r hotResult) allocsPerOp() float64 {
	if r.ops == 0 {
		return 0
	}
	return float64(r.mallocs) / float64(r.ops)
}

const (
	// hotBatch is how many reads run between clock reads, so the clock
	// costs little next to a 50 ns hit; a 40 us round trip overshoots the
	// deadline by about 3 ms.
	hotBatch = 64
	// maxBatches bounds each goroutine's loop by count as well as by time.
	maxBatches = 1 << 30
	// warmReads bounds how often warm reads a key before giving up.
	warmReads = 10_000
)

// warm reads key until the node serves value from its local tier (or, for
// a library with none, just gets value), bounded by count and by timeout.
// Fills may be asynchronous (tiercache and ristretto apply sets on their own
// goroutines), so one read is not enough.
func warm(ctx context.Context, n node, lib library, key, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	var lastErr error
	for i := 0; i < warmReads && time.Now().Before(deadline); i++ {
		v, local, err := n.probe(ctx, key)
		if err == nil && v == want && (local || !lib.localTier) {
			return nil
		}
		last, lastErr = v, err
	}
	return fmt.Errorf("%s: key %q not served locally as %q within %v (last read %q, %v)", lib.name, key, want, timeout, last, lastErr)
}

// measureHot reads key from n in a tight loop on goroutines goroutines for
// d, and counts heap allocations over the whole run with MemStats (so a
// library's background goroutines are counted too, amortized over every op).
func measureHot(ctx context.Context, n node, key string, goroutines int, d time.Duration) hotResult {
	var ops, errs atomic.Int64
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			var mine, bad int64
			for b := 0; b < maxBatches; b++ {
				for range hotBatch {
					if _, err := n.get(ctx, key); err != nil {
						bad++
					}
				}
				mine += hotBatch
				if !time.Now().Before(deadline) || ctx.Err() != nil {
					break
				}
			}
			ops.Add(mine)
			errs.Add(bad)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return hotResult{
		goroutines: goroutines,
		ops:        ops.Load(),
		elapsed:    elapsed,
		mallocs:    after.Mallocs - before.Mallocs,
		errors:     errs.Load(),
	}
}
