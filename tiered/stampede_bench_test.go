package tiered

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/tiercache/tiercache/internal/redistest"
)

const (
	stampedeNodes   = 4
	stampedeCallers = 50
	stampedeLoad    = 20 * time.Millisecond // the simulated database query
)

// BenchmarkStampede: every iteration, 4 nodes x 50 goroutines miss one cold
// key at once. impl=leases is this library; impl=singleflight is the usual
// two-tier design (per-node singleflight, GET then SET), one load per node.
// Reported: loader calls per stampede and the p99 time for a caller to get
// its value.
func BenchmarkStampede(b *testing.B) {
	s := redistest.Real(b)
	b.Run("impl=leases", func(b *testing.B) {
		cs := make([]*Cache[string], stampedeNodes)
		for i := range cs {
			cs[i] = newNode[string](b, s, nil)
		}
		var loads atomic.Int64
		loader := func(context.Context, string) (string, error) {
			loads.Add(1)
			time.Sleep(stampedeLoad)
			return "v", nil
		}
		runStampedes(b, &loads, func(node int, key string) error {
			_, err := cs[node].GetOrLoad(context.Background(), key, loader)
			return err
		})
	})
	b.Run("impl=singleflight", func(b *testing.B) {
		type node struct {
			rdb *redis.Client
			sf  singleflight.Group
		}
		ns := make([]*node, stampedeNodes)
		for i := range ns {
			ns[i] = &node{rdb: s.Client(b)}
		}
		var loads atomic.Int64
		runStampedes(b, &loads, func(i int, key string) error {
			n := ns[i]
			ctx := context.Background()
			if err := n.rdb.Get(ctx, key).Err(); err != redis.Nil {
				return err
			}
			_, err, _ := n.sf.Do(key, func() (any, error) {
				loads.Add(1)
				time.Sleep(stampedeLoad)
				return "v", n.rdb.Set(ctx, key, "v", time.Minute).Err()
			})
			return err
		})
	})
}

func runStampedes(b *testing.B, loads *atomic.Int64, get func(node int, key string) error) {
	var lat []time.Duration
	var mu sync.Mutex
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprintf("cold-%d-%d", time.Now().UnixNano(), i)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for n := range stampedeNodes {
			for range stampedeCallers {
				wg.Go(func() {
					<-start
					t0 := time.Now()
					if err := get(n, key); err != nil {
						b.Error(err)
					}
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				})
			}
		}
		close(start)
		wg.Wait()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/stampede")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}
