package tiered

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/tiercache/tiercache/internal/redistest"
)

// item is a small record, as a service would cache: two strings and an int.
type item struct {
	Name, Category string
	Stock          int
}

var sinkItem int

// BenchmarkL1HitKeys is Cache.Get served from L1 over many keys, beside a
// raw ristretto Get of a pointer that reads the value as a caller would:
// one key; 1,024 keys in turn; 65,536 keys in a random order, where memory
// latency dominates. impl=tiered caches *item; impl=tiered-struct caches
// item by value (Cache[item]), as a caller who wants no shared pointers
// would. Compare with benchstat:
//
//	go test -run '^$' -bench L1HitKeys -count 10 ./tiered > x.txt && benchstat -col /impl x.txt
func BenchmarkL1HitKeys(b *testing.B) {
	for _, n := range []int{1, 1024, 65536} {
		keys := make([]string, n)   // filled under these strings
		lookup := make([]string, n) // and read under copies, as a service builds keys per request
		for i := range keys {
			keys[i] = fmt.Sprintf("item:%d", i)
			lookup[i] = strings.Clone(keys[i])
		}
		order := make([]int, 1<<16) // the sequence of key indexes read
		r := rand.New(rand.NewPCG(1, 2))
		for i := range order {
			if n == 65536 {
				order[i] = r.IntN(n)
			} else {
				order[i] = i % n
			}
		}
		s := redistest.Mini(b)
		c := newNode[*item](b, s, func(o *Options) { o.LocalMaxCost = 1 << 30 })
		cs := newNode[item](b, s, func(o *Options) { o.LocalMaxCost = 1 << 30 })
		rc, err := ristretto.NewCache(&ristretto.Config[string, *item]{NumCounters: 10 * int64(n), MaxCost: 1 << 30, BufferItems: 64})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(rc.Close)
		for i, k := range keys {
			v := &item{Name: k, Category: "c", Stock: i}
			for !c.l1.Fill(k, v, 1, time.Hour, c.l1.Stamp(k)) {
			}
			for !cs.l1.Fill(k, *v, 1, time.Hour, cs.l1.Stamp(k)) {
			}
			for !rc.Set(k, v, 1) {
			}
		}
		c.l1.Wait()
		cs.l1.Wait()
		rc.Wait()
		for _, k := range keys { // every key must be a hit in all three
			if _, _, ok := c.l1.Get(k); !ok {
				b.Fatalf("L1 lacks %s", k)
			}
			if _, _, ok := cs.l1.Get(k); !ok {
				b.Fatalf("L1 (by value) lacks %s", k)
			}
			if _, ok := rc.Get(k); !ok {
				b.Fatalf("ristretto lacks %s", k)
			}
		}
		ctx := context.Background()
		impls := []struct {
			name string
			get  func(k string) int
		}{
			{"tiered", func(k string) int {
				v, err := c.Get(ctx, k)
				if err != nil {
					b.Fatal(err)
				}
				return v.Stock
			}},
			{"tiered-struct", func(k string) int {
				v, err := cs.Get(ctx, k)
				if err != nil {
					b.Fatal(err)
				}
				return v.Stock
			}},
			{"ristretto", func(k string) int {
				v, ok := rc.Get(k)
				if !ok {
					b.Fatal("miss")
				}
				return v.Stock
			}},
		}
		for _, impl := range impls {
			b.Run(fmt.Sprintf("keys=%d/impl=%s/mode=serial", n, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				i, sum := 0, 0
				for b.Loop() {
					sum += impl.get(lookup[order[i&(len(order)-1)]])
					i++
				}
				sinkItem = sum
			})
			b.Run(fmt.Sprintf("keys=%d/impl=%s/mode=parallel", n, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i, sum := rand.IntN(len(order)), 0
					for pb.Next() {
						sum += impl.get(lookup[order[i&(len(order)-1)]])
						i++
					}
					sinkItem = sum
				})
			})
		}
	}
}
