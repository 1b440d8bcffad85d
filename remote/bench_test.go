package remote_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// The Store benchmarks each have a raw go-redis twin doing the same work
// without the envelope, so that
//
//	go test -run '^$' -bench . -count 10 ./remote/ > new.txt
//	benchstat -col /impl new.txt
//
// shows what the Store adds.

var small = product{ID: 42, Name: "widget", Price: 9.5, Tags: []string{"tools", "garden"}}

// benchStore returns a Store and a raw client on a fresh real redis-server.
func benchStore(b *testing.B) (*remote.Store, *redis.Client) {
	b.Helper()
	s := redistest.Real(b)
	rdb := s.Client(b)
	return newStore(b, rdb, remote.Options{}), rdb
}

func BenchmarkGet(b *testing.B) {
	b.Run("impl=store", func(b *testing.B) {
		st, _ := benchStore(b)
		ctx := context.Background()
		data, _ := st.Encode("k", small, time.Hour)
		if err := st.Write(ctx, []remote.SetOp{{Key: "k", Data: data, TTL: time.Hour}}, nil, "", nil); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			it, ok, err := st.Get(ctx, "k")
			var p product
			if err != nil || !ok || st.Decode(it, &p) != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		_, rdb := benchStore(b)
		ctx := context.Background()
		data, _ := json.Marshal(small)
		rdb.Set(ctx, "ns:k", data, time.Hour)
		b.ReportAllocs()
		for b.Loop() {
			raw, err := rdb.Get(ctx, "ns:k").Bytes()
			var p product
			if err != nil || json.Unmarshal(raw, &p) != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkGetMany100(b *testing.B) {
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint("item:", i)
	}
	b.Run("impl=store", func(b *testing.B) {
		st, _ := benchStore(b)
		ctx := context.Background()
		sets := make([]remote.SetOp, len(keys))
		for i, k := range keys {
			data, _ := st.Encode(k, small, time.Hour)
			sets[i] = remote.SetOp{Key: k, Data: data, TTL: time.Hour}
		}
		if err := st.Write(ctx, sets, nil, "", nil); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			items, ok, err := st.GetMany(ctx, keys)
			if err != nil {
				b.Fatal(err)
			}
			for i := range items {
				var p product
				if !ok[i] || st.Decode(items[i], &p) != nil {
					b.Fatal(i)
				}
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		_, rdb := benchStore(b)
		ctx := context.Background()
		full := make([]string, len(keys))
		data, _ := json.Marshal(small)
		for i, k := range keys {
			full[i] = "ns:" + k
			rdb.Set(ctx, full[i], data, time.Hour)
		}
		b.ReportAllocs()
		for b.Loop() {
			vals, err := rdb.MGet(ctx, full...).Result()
			if err != nil {
				b.Fatal(err)
			}
			for _, v := range vals {
				var p product
				if json.Unmarshal([]byte(v.(string)), &p) != nil {
					b.Fatal(v)
				}
			}
		}
	})
}

// BenchmarkLeaseMiss is the miss path of a cache with leases (take the
// lease, fill) against a plain cache-aside miss (GET, SET).
func BenchmarkLeaseMiss(b *testing.B) {
	b.Run("impl=store", func(b *testing.B) {
		st, _ := benchStore(b)
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			key := "miss:" + fmt.Sprint(i)
			i++
			l, err := st.GetOrLease(ctx, key, time.Second)
			if err != nil || l.State != remote.LeaseGranted {
				b.Fatal(l.State, err)
			}
			data, _ := st.Encode(key, small, time.Minute)
			if ok, err := st.Fill(ctx, key, l.Token, data, time.Minute); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("impl=raw", func(b *testing.B) {
		_, rdb := benchStore(b)
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			key := "ns:miss:" + fmt.Sprint(i)
			i++
			if err := rdb.Get(ctx, key).Err(); err != redis.Nil {
				b.Fatal(err)
			}
			data, _ := json.Marshal(small)
			if err := rdb.Set(ctx, key, data, time.Minute).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// catalog returns about size bytes of product JSON: varied words and
// numbers, as an API would cache, rather than repeated text that
// compresses unrealistically well.
func catalog(size int) []byte {
	words := strings.Fields(`steel oak garden kitchen compact premium cordless
		ergonomic handle blade battery charger outdoor indoor stainless
		lightweight heavy duty adjustable warranty replacement kit set pro`)
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) string {
		w := make([]string, n)
		for i := range w {
			w[i] = words[r.IntN(len(words))]
		}
		return strings.Join(w, " ")
	}
	var items []product
	for {
		items = append(items, product{
			ID:    r.IntN(1_000_000),
			Name:  pick(3),
			Price: float64(r.IntN(100_000)) / 100,
			Tags:  strings.Fields(pick(3)),
			Blurb: pick(12),
		})
		if out, _ := json.Marshal(items); len(out) >= size {
			return out[:len(out):len(out)]
		}
	}
}

// BenchmarkCompression measures each candidate on catalog JSON: the ratio
// (compressed/original) and the time of one encode plus one decode.
func BenchmarkCompression(b *testing.B) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	algos := []struct {
		name   string
		encode func(dst, src []byte) []byte
		decode func(dst, src []byte) ([]byte, error)
	}{
		{"s2", s2.Encode, s2.Decode},
		{"s2better", s2.EncodeBetter, s2.Decode},
		{"zstdfastest", func(dst, src []byte) []byte { return enc.EncodeAll(src, dst[:0]) },
			func(dst, src []byte) ([]byte, error) { return dec.DecodeAll(src, dst[:0]) }},
	}
	for _, size := range []int{256, 512, 1 << 10, 4 << 10, 16 << 10} {
		doc := catalog(size)
		for _, a := range algos {
			b.Run(fmt.Sprintf("size=%d/algo=%s", size, a.name), func(b *testing.B) {
				cbuf := make([]byte, s2.MaxEncodedLen(len(doc))+64)
				dbuf := make([]byte, len(doc))
				var c []byte
				b.SetBytes(int64(len(doc)))
				for b.Loop() {
					c = a.encode(cbuf, doc)
					if _, err := a.decode(dbuf, c); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(c))/float64(len(doc)), "ratio")
			})
		}
	}
}
