package tiered

// Benchmarks of the public read paths, each beside its baseline in the same
// run. Compare with benchstat:
//
//	go test -run '^$' -bench . -count 10 ./tiered/ > new.txt && benchstat new.txt

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

var sinkProduct *product

// BenchmarkL1Hit is Cache.Get served from L1, against a raw ristretto Get of
// a pointer (no TTL, metrics off: its cheapest configuration), one goroutine
// and one per core.
func BenchmarkL1Hit(b *testing.B) {
	s := redistest.Mini(b)
	c := newNode[*product](b, s, nil)
	warmL1(b, c, "42")
	r, err := ristretto.NewCache(&ristretto.Config[string, *product]{
		NumCounters: 1e6, MaxCost: 64 << 20, BufferItems: 64,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for !r.Set("42", &product{ID: 1, Name: "widget", Price: 9.5}, 1) {
	}
	r.Wait()
	ctx := context.Background()
	impls := []struct {
		name string
		get  func() *product
	}{
		{"tiered", func() *product {
			v, err := c.Get(ctx, "42")
			if err != nil {
				b.Fatal(err)
			}
			return v
		}},
		{"ristretto", func() *product {
			v, ok := r.Get("42")
			if !ok {
				b.Fatal("miss")
			}
			return v
		}},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name+"/mode=serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkProduct = impl.get()
			}
		})
		b.Run("impl="+impl.name+"/mode=parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var v *product
				for pb.Next() {
					v = impl.get()
				}
				sinkProduct = v
			})
		})
	}
}

// l2Keys are pre-set in Redis; the cache under test has an L1 too small to
// admit anything, so every Get takes the L2 path, fill attempt included.
const l2Keys = 1000

func setupL2(b *testing.B) (*redistest.Server, *Cache[*product], *redis.Client) {
	s := redistest.Real(b)
	c := newNode[*product](b, s, func(o *Options) { o.LocalMaxCost = 1 })
	ctx := context.Background()
	vals := map[string]*product{}
	for i := range l2Keys {
		vals[fmt.Sprint(i)] = &product{ID: i, Name: "widget", Price: 9.5}
	}
	if err := c.SetMany(ctx, vals); err != nil {
		b.Fatal(err)
	}
	return s, c, s.Client(b)
}

// BenchmarkL2Hit is Cache.Get (and Cache.GetOrLoad, whose L2 read is the
// lease command) with an L1 miss and an L2 hit, against a raw go-redis GET
// of the same bytes plus the same JSON decode.
func BenchmarkL2Hit(b *testing.B) {
	s, c, raw := setupL2(b)
	ctx := context.Background()
	// The default client (no ContextTimeoutEnabled) runs each round trip
	// on a goroutine of its own, so that a stuck call can be abandoned;
	// this is the same read through a client that honours deadlines.
	ro := s.Options()
	ro.ContextTimeoutEnabled = true
	ctxClient := redis.NewClient(ro)
	b.Cleanup(func() { _ = ctxClient.Close() })
	cc := newNode[*product](b, s, func(o *Options) { o.LocalMaxCost = 1; o.Redis = ctxClient })
	b.Run("impl=tiered-ctxtimeout", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			v, err := cc.Get(ctx, fmt.Sprint(i%l2Keys))
			if err != nil {
				b.Fatal(err)
			}
			sinkProduct = v
		}
	})
	b.Run("impl=tiered", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			v, err := c.Get(ctx, fmt.Sprint(i%l2Keys))
			if err != nil {
				b.Fatal(err)
			}
			sinkProduct = v
		}
	})
	b.Run("impl=tiered-getorload", func(b *testing.B) {
		loader := func(context.Context, string) (*product, error) {
			b.Fatal("loader called on an L2 hit")
			return nil, nil
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			v, err := c.GetOrLoad(ctx, fmt.Sprint(i%l2Keys), loader)
			if err != nil {
				b.Fatal(err)
			}
			sinkProduct = v
		}
	})
	b.Run("impl=go-redis", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			data, err := raw.Get(ctx, "test:"+fmt.Sprint(i%l2Keys)).Bytes()
			if err != nil {
				b.Fatal(err)
			}
			var p product
			if err := json.Unmarshal(data[envelopeHeader(data):], &p); err != nil {
				b.Fatal(err)
			}
			sinkProduct = &p
		}
	})
}

// BenchmarkGetMany100Cold is GetMany of 100 keys with a cold L1, against a
// raw MGET of 100 keys plus the same decodes.
func BenchmarkGetMany100Cold(b *testing.B) {
	_, c, raw := setupL2(b)
	ctx := context.Background()
	keys := make([]string, 100)
	rawKeys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint(i * 7 % l2Keys)
		rawKeys[i] = "test:" + keys[i]
	}
	b.Run("impl=tiered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := c.GetMany(ctx, keys)
			if err != nil || len(m) != 100 {
				b.Fatalf("GetMany: %d values, %v", len(m), err)
			}
		}
	})
	b.Run("impl=go-redis", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			vals, err := raw.MGet(ctx, rawKeys...).Result()
			if err != nil {
				b.Fatal(err)
			}
			m := make(map[string]*product, len(vals))
			for i, v := range vals {
				s := v.(string)
				var p product
				if err := json.Unmarshal([]byte(s[envelopeHeader([]byte(s)):]), &p); err != nil {
					b.Fatal(err)
				}
				m[keys[i]] = &p
			}
		}
	})
}

// envelopeHeader is the length of remote's envelope header (magic,
// version, kind, codec, flags, expiry), so the raw baselines decode exactly
// the bytes the cache decodes. TestEnvelopeHeaderLen keeps it honest.
func envelopeHeader([]byte) int { return 13 }

// BenchmarkSet is Cache.Set on a real redis-server (a fenced script that
// writes and publishes), beside what a write costs without the fence: a
// raw go-redis MULTI/EXEC of the same SET and PUBLISH.
func BenchmarkSet(b *testing.B) {
	s := redistest.Real(b)
	c := newNode[*product](b, s, nil)
	raw := s.Client(b)
	ctx := context.Background()
	p := &product{ID: 1, Name: "widget", Price: 9.5}
	data, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("impl=tiered", func(b *testing.B) {
		for b.Loop() {
			if err := c.Set(ctx, "k", p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=multi-exec", func(b *testing.B) {
		for b.Loop() {
			if _, err := raw.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.Set(ctx, "raw:k", data, 10*time.Minute)
				pipe.Publish(ctx, "raw-channel", "k")
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
