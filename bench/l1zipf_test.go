package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"

	"github.com/tiercache/tiercache/local"
)

// zipfKeys is the key count of the memory-bound reference row: far more
// entries than the CPU caches hold, so a hit's cost is its cache misses.
const zipfKeys = 1 << 20

type zipfItem struct {
	Name, Category string
	Stock          int
}

var zipfSink int

// BenchmarkL1Zipf1M is the L1 hit at 1M keys read with Zipf popularity
// (s = 1.01), for tiercache's L1 (local.Cache, the store under
// tiered.Cache's Get, which adds one atomic load; see tiered's
// BenchmarkL1HitKeys), raw ristretto and raw otter v2, each holding
// *zipfItem and read under a copy of the key, the value read as a caller
// would. Every key is a hit in all three before timing starts.
//
//	go test -run '^$' -bench L1Zipf1M -count 10 . | benchstat -col /impl -
func BenchmarkL1Zipf1M(b *testing.B) {
	keys := make([]string, zipfKeys)
	lookup := make([]string, zipfKeys)
	vals := make([]*zipfItem, zipfKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("item:%d", i)
		lookup[i] = strings.Clone(keys[i])
		vals[i] = &zipfItem{Name: keys[i], Category: "c", Stock: i}
	}
	order := make([]int32, 1<<22)
	z := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.01, 1, zipfKeys-1)
	for i := range order {
		order[i] = int32(z.Uint64())
	}

	lc, err := local.New[*zipfItem](local.Options{MaxCost: 1 << 30, EpochSlots: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer lc.Close()
	rc, err := ristretto.NewCache(&ristretto.Config[string, *zipfItem]{
		NumCounters: 10 * zipfKeys, MaxCost: 1 << 30, BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	oc := otter.Must(&otter.Options[string, *zipfItem]{MaximumSize: 2 * zipfKeys, InitialCapacity: zipfKeys})

	// Ristretto and local apply sets asynchronously and may drop them
	// when their buffer is full: set, wait, and set again what is
	// missing, a bounded number of rounds.
	fill := func(name string, set func(i int), wait func(), has func(i int) bool) {
		missing := make([]int, zipfKeys)
		for i := range missing {
			missing[i] = i
		}
		for round := 0; len(missing) > 0; round++ {
			if round == 20 {
				b.Fatalf("%s: %d keys still missing after %d rounds", name, len(missing), round)
			}
			for _, i := range missing {
				set(i)
			}
			wait()
			left := missing[:0]
			for _, i := range missing {
				if !has(i) {
					left = append(left, i)
				}
			}
			missing = left
		}
	}
	fill("local", func(i int) { lc.Fill(keys[i], vals[i], 1, time.Hour, lc.Stamp(keys[i])) }, lc.Wait,
		func(i int) bool { _, _, ok := lc.Get(keys[i]); return ok })
	fill("ristretto", func(i int) { rc.Set(keys[i], vals[i], 1) }, rc.Wait,
		func(i int) bool { _, ok := rc.Get(keys[i]); return ok })
	fill("otter", func(i int) { oc.Set(keys[i], vals[i]) }, func() {},
		func(i int) bool { _, ok := oc.GetIfPresent(keys[i]); return ok })

	impls := []struct {
		name string
		get  func(k string) (*zipfItem, bool)
	}{
		{"tiercache-l1", func(k string) (*zipfItem, bool) {
			p, _, _, ok := lc.GetRef(k)
			if !ok {
				return nil, false
			}
			return *p, true
		}},
		{"ristretto", rc.Get},
		{"otter", oc.GetIfPresent},
	}
	for _, impl := range impls {
		run := func(b *testing.B, start int) (sum, misses int) {
			i := start
			for ; b.Loop(); i++ {
				v, ok := impl.get(lookup[order[i&(len(order)-1)]])
				if !ok {
					misses++
					continue
				}
				sum += v.Stock
			}
			return sum, misses
		}
		b.Run("impl="+impl.name+"/mode=serial", func(b *testing.B) {
			b.ReportAllocs()
			sum, misses := run(b, 0)
			zipfSink = sum
			b.ReportMetric(float64(misses)/float64(b.N), "misses/op")
		})
		b.Run("impl="+impl.name+"/mode=parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i, sum := rand.IntN(len(order)), 0
				for pb.Next() {
					if v, ok := impl.get(lookup[order[i&(len(order)-1)]]); ok {
						sum += v.Stock
					}
					i++
				}
				zipfSink = sum
			})
		})
	}
}
