package local

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// benchKeys is how many distinct keys the hit benchmarks cycle through: a
// set that fits the caches, so that every Get hits, and is spread over
// ristretto's and the gate's shards.
const benchKeys = 1024

type benchValue struct{ n int }

func benchKeyList() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "product:" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkHit measures a Get that hits: serially, in parallel over many
// keys, and in parallel on one hot key.
func BenchmarkHit(b *testing.B) {
	keys := benchKeyList()
	c, err := New[*benchValue](Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for i, key := range keys {
		c.Fill(key, &benchValue{n: i}, 100, time.Hour, c.Stamp(key))
		c.Wait()
	}
	for _, key := range keys {
		if _, _, ok := c.Get(key); !ok {
			b.Fatalf("Get(%q) missed after Fill", key)
		}
	}

	b.Run("mode=serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.Get(keys[i%benchKeys])
			i++
		}
	})
	b.Run("mode=parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(benchKeys) // goroutines walk the keys out of step
			for pb.Next() {
				c.Get(keys[i%benchKeys])
				i++
			}
		})
	})
	b.Run("mode=parallel-hot", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Get(keys[0])
			}
		})
	})
}

// BenchmarkRistrettoGet is BenchmarkHit's baseline: raw ristretto, string
// keys, pointer values, configured like the cache's own instance (no TTL,
// Metrics off).
func BenchmarkRistrettoGet(b *testing.B) {
	keys := benchKeyList()
	o := Options{}.withDefaults()
	rc, err := ristretto.NewCache(&ristretto.Config[string, *benchValue]{
		NumCounters:        o.NumCounters,
		MaxCost:            o.MaxCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	for i, key := range keys {
		rc.Set(key, &benchValue{n: i}, 100)
		rc.Wait()
	}
	for _, key := range keys {
		if _, ok := rc.Get(key); !ok {
			b.Fatalf("Get(%q) missed after Set", key)
		}
	}

	b.Run("mode=serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			rc.Get(keys[i%benchKeys])
			i++
		}
	})
	b.Run("mode=parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(benchKeys) // goroutines walk the keys out of step
			for pb.Next() {
				rc.Get(keys[i%benchKeys])
				i++
			}
		})
	})
	b.Run("mode=parallel-hot", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rc.Get(keys[0])
			}
		})
	})
}

// BenchmarkMiss measures a Get of an absent key.
func BenchmarkMiss(b *testing.B) {
	c, err := New[*benchValue](Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	keys := benchKeyList()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Get(keys[i%benchKeys])
		i++
	}
}

// BenchmarkStampFill measures what a fill costs besides the read it
// brackets: a Stamp and a Fill of a key already present.
func BenchmarkStampFill(b *testing.B) {
	c, err := New[*benchValue](Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	keys := benchKeyList()
	v := &benchValue{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := keys[i%benchKeys]
		c.Fill(key, v, 100, time.Hour, c.Stamp(key))
		i++
	}
}

// BenchmarkInvalidate measures Invalidate of one key, as the bus calls it.
func BenchmarkInvalidate(b *testing.B) {
	c, err := New[*benchValue](Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	keys := benchKeyList()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Invalidate(keys[i%benchKeys])
		i++
	}
}

// BenchmarkFillThroughput is fills per second on GOMAXPROCS goroutines over
// 65,536 keys, a Stamp and a Fill each, beside raw ristretto Sets of the
// same keys and costs into a cache configured like the cache's own. Both
// hand sets to ristretto's buffer, which applies them on its goroutine, so
// what is measured is the caller's side plus whatever the buffer's
// back-pressure costs it (dropped sets are counted, not retried).
//
//	go test -run '^$' -bench FillThroughput -count 10 ./local
func BenchmarkFillThroughput(b *testing.B) {
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = "product:" + strconv.Itoa(i)
	}
	report := func(b *testing.B, dropped uint64) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fills/s")
		b.ReportMetric(float64(dropped)/float64(b.N), "dropped/op")
	}
	b.Run("impl=local", func(b *testing.B) {
		c, err := New[*benchValue](Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		v := &benchValue{}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(keys))
			for pb.Next() {
				key := keys[i&(len(keys)-1)]
				c.Fill(key, v, 100, time.Hour, c.Stamp(key))
				i++
			}
		})
		report(b, c.Stats().DroppedSets)
	})
	b.Run("impl=ristretto", func(b *testing.B) {
		o := Options{}.withDefaults()
		rc, err := ristretto.NewCache(&ristretto.Config[string, *benchValue]{
			NumCounters:        o.NumCounters,
			MaxCost:            o.MaxCost,
			BufferItems:        64,
			IgnoreInternalCost: true,
		})
		if err != nil {
			b.Fatal(err)
		}
		defer rc.Close()
		v := &benchValue{}
		var dropped atomic.Uint64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(keys))
			for pb.Next() {
				if !rc.Set(keys[i&(len(keys)-1)], v, 100) {
					dropped.Add(1)
				}
				i++
			}
		})
		report(b, dropped.Load())
	})
}
