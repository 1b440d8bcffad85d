package tiered

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// BenchmarkConfirmedWrite is a Set on one of N nodes (each with its own
// client and bus, in one process, on one loopback redis-server), plain and
// confirmed, reporting the write's p50 and p99. A confirmed Set returns
// once every node's bus has applied and acknowledged its invalidation.
//
//	go test -run '^$' -bench ConfirmedWrite -benchtime 2000x ./tiered
func BenchmarkConfirmedWrite(b *testing.B) {
	for _, n := range []int{4, 16, 64} {
		s := redistest.Real(b)
		nodes := make([]*Cache[string], n)
		for i := range nodes {
			nodes[i] = newNode[string](b, s, func(o *Options) {
				o.HeartbeatInterval, o.MaxStaleness = 0, 0 // the defaults: 500ms, 2s
			})
		}
		for _, confirm := range []bool{false, true} {
			b.Run(fmt.Sprintf("nodes=%d/confirm=%v", n, confirm), func(b *testing.B) {
				var opts []WriteOption
				if confirm {
					opts = append(opts, Confirm())
				}
				ctx := context.Background()
				lat := make([]time.Duration, 0, b.N)
				for i := 0; b.Loop(); i++ {
					start := time.Now()
					if err := nodes[0].Set(ctx, fmt.Sprint("k", i%256), "v", opts...); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
			})
		}
	}
}
