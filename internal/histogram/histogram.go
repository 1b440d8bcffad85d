// Package histogram keeps latency distributions in fixed buckets of atomic
// counters, cheap enough to record on every L2 call, load or message, and
// read at scrape time by the metrics package.
package histogram

import (
	"math"
	"sync/atomic"
	"time"
)

// Bounds are the upper bounds of the buckets, in seconds: 50µs to ~30s,
// roughly doubling, so loopback Redis calls and slow loaders both resolve.
var bounds = [...]float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// Bounds returns a copy of the bucket upper bounds in seconds.
func Bounds() []float64 {
	b := make([]float64, len(bounds))
	copy(b, bounds[:])
	return b
}

// Histogram is a fixed-bucket latency histogram. The zero value is ready to
// use; it is safe for concurrent use and must not be copied after first use.
type Histogram struct {
	counts [len(bounds) + 1]atomic.Uint64 // last bucket is +Inf
	count  atomic.Uint64
	sumNs  atomic.Int64
}

// Observe records one duration. Negative durations (clock skew between nodes)
// count as zero.
func (h *Histogram) Observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s := d.Seconds()
	i := 0
	for i < len(bounds) && s > bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sumNs.Add(int64(d))
}

// Snapshot is a point-in-time copy of a Histogram in the shape
// prometheus.MustNewConstHistogram takes: cumulative counts per upper bound.
type Snapshot struct {
	Count   uint64
	Sum     float64            // seconds
	Buckets map[float64]uint64 // upper bound (s) -> cumulative count
}

// Snapshot reads the histogram. Buckets are read one by one, so a snapshot
// taken during Observe calls can be off by those calls; Count is made
// consistent with the buckets.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Buckets: make(map[float64]uint64, len(bounds))}
	var cum uint64
	for i, b := range bounds {
		cum += h.counts[i].Load()
		s.Buckets[b] = cum
	}
	cum += h.counts[len(bounds)].Load()
	s.Count = cum
	s.Sum = float64(h.sumNs.Load()) / float64(time.Second)
	return s
}

// Quantile estimates the q-quantile (0..1) from the buckets by returning the
// upper bound of the bucket holding it; +Inf when it is past the last bound.
func (h *Histogram) Quantile(q float64) float64 {
	s := h.Snapshot()
	if s.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.Count)))
	for _, b := range bounds {
		if s.Buckets[b] >= rank {
			return b
		}
	}
	return math.Inf(1)
}
