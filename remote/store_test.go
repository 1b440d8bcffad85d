package remote_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// product is a representative cached value.
type product struct {
	ID    int      `json:"id" msgpack:"id"`
	Name  string   `json:"name" msgpack:"name"`
	Price float64  `json:"price" msgpack:"price"`
	Tags  []string `json:"tags" msgpack:"tags"`
	Blurb string   `json:"blurb" msgpack:"blurb"`
}

func newStore(t testing.TB, rdb redis.UniversalClient, o remote.Options) *remote.Store {
	t.Helper()
	o.Redis = rdb
	if o.Namespace == "" {
		o.Namespace = "ns"
	}
	s, err := remote.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// set encodes v and writes it under key with no message.
func set(t *testing.T, st *remote.Store, key string, v any, ttl time.Duration) {
	t.Helper()
	data, err := st.Encode(key, v, ttl)
	if err != nil {
		t.Fatalf("Encode(%q): %v", key, err)
	}
	if err := st.Write(context.Background(), []remote.SetOp{{Key: key, Data: data, TTL: ttl}}, nil, "", nil); err != nil {
		t.Fatalf("Write(%q): %v", key, err)
	}
}

func TestNewValidates(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	tests := []struct {
		name string
		give remote.Options
		want string
	}{
		{"no redis", remote.Options{Namespace: "ns"}, "remote: Options.Redis is required"},
		{"no namespace", remote.Options{Redis: rdb}, "remote: Options.Namespace is required"},
		{"colon", remote.Options{Redis: rdb, Namespace: "a:b"}, `remote: Options.Namespace "a:b" must not contain ':', '{' or '}'`},
		{"brace", remote.Options{Redis: rdb, Namespace: "{a}"}, `remote: Options.Namespace "{a}" must not contain ':', '{' or '}'`},
		{"negative timeout", remote.Options{Redis: rdb, Namespace: "ns", Timeout: -1}, "remote: Options.Timeout is negative: -1ns"},
		{"negative key size", remote.Options{Redis: rdb, Namespace: "ns", MaxKeySize: -1}, "remote: Options.MaxKeySize is negative: -1"},
		{"tiny value size", remote.Options{Redis: rdb, Namespace: "ns", MaxValueSize: 29}, "remote: Options.MaxValueSize must be over 29: 29"},
		{"negative threshold", remote.Options{Redis: rdb, Namespace: "ns", CompressThreshold: -1}, "remote: Options.CompressThreshold is negative: -1"},
		{"reserved codec", remote.Options{Redis: rdb, Namespace: "ns", Codec: idCodec(7)}, "remote: Options.Codec ID 7 is reserved; user codecs use 128..255"},
		{"user codec", remote.Options{Redis: rdb, Namespace: "ns", Codec: idCodec(200)}, ""},
		{"defaults", remote.Options{Redis: rdb, Namespace: "ns"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := remote.New(tt.give)
			if got := fmt.Sprint(err); err != nil && got != tt.want || err == nil && tt.want != "" {
				t.Errorf("New() error = %v, want %q", err, tt.want)
			}
		})
	}
}

// idCodec is JSON under another id.
type idCodec uint8

func (c idCodec) ID() uint8                        { return uint8(c) }
func (idCodec) Marshal(v any) ([]byte, error)      { return remote.JSON{}.Marshal(v) }
func (idCodec) Unmarshal(data []byte, v any) error { return remote.JSON{}.Unmarshal(data, v) }

func TestKeys(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	st := newStore(t, rdb, remote.Options{Namespace: "products", MaxKeySize: 8})
	tests := []struct {
		name       string
		give       string
		wantReason string
	}{
		{"ok", "42", ""},
		{"at limit", "12345678", ""},
		{"empty", "", "empty"},
		{"too long", "123456789", "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.CheckKey(tt.give)
			var ke *remote.KeyError
			gotReason := ""
			if errors.As(err, &ke) {
				gotReason = ke.Reason
			}
			if gotReason != tt.wantReason || (err == nil) != (tt.wantReason == "") {
				t.Errorf("CheckKey(%q) = %v, want reason %q", tt.give, err, tt.wantReason)
			}
		})
	}
	// Bad keys fail before any round trip (this client has no server).
	for _, k := range []string{"", "123456789"} {
		var ke *remote.KeyError
		if _, _, err := st.Get(context.Background(), k); !errors.As(err, &ke) {
			t.Errorf("Get(%q) error = %v, want *KeyError", k, err)
		}
		if _, _, err := st.GetMany(context.Background(), []string{"ok", k}); !errors.As(err, &ke) {
			t.Errorf("GetMany(%q) error = %v, want *KeyError", k, err)
		}
		if err := st.Write(context.Background(), nil, []string{k}, "", nil); !errors.As(err, &ke) {
			t.Errorf("Write(del %q) error = %v, want *KeyError", k, err)
		}
	}
	if got, want := st.Key("42"), "products:42"; got != want {
		t.Errorf("Key(%q) = %q, want %q", "42", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	small := product{ID: 1, Name: "widget", Price: 9.5, Tags: []string{"a", "b"}}
	big := small
	big.Blurb = strings.Repeat("a fine widget, ", 1000)
	tests := []struct {
		name    string
		codec   remote.Codec
		disable bool
		give    product
	}{
		{"json small", remote.JSON{}, false, small},
		{"json big compressed", remote.JSON{}, false, big},
		{"json big uncompressed", remote.JSON{}, true, big},
		{"msgpack small", remote.Msgpack{}, false, small},
		{"msgpack big compressed", remote.Msgpack{}, false, big},
		{"msgpack big uncompressed", remote.Msgpack{}, true, big},
	}
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st := newStore(t, s.Client(t), remote.Options{Codec: tt.codec, DisableCompression: tt.disable})
				const ttl = time.Minute
				set(t, st, "k", tt.give, ttl)
				it, ok, err := st.Get(context.Background(), "k")
				if err != nil || !ok {
					t.Fatalf("Get() = %v, %v", ok, err)
				}
				if it.Kind != remote.KindValue || it.TTL > ttl || it.TTL < ttl-5*time.Second {
					t.Errorf("Get() kind %v, TTL %v; want value, about %v", it.Kind, it.TTL, ttl)
				}
				var got product
				if err := st.Decode(it, &got); err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.give) {
					t.Errorf("Decode() = %+v, want %+v", got, tt.give)
				}
				// A big value shrinks on the wire unless compression is off.
				if compressed := it.Size < len(tt.give.Blurb); compressed != (tt.give.Blurb != "" && !tt.disable) {
					t.Errorf("stored size %d for a %d-byte blurb, compression disabled %v", it.Size, len(tt.give.Blurb), tt.disable)
				}
			})
		}
	})
}

func TestNoExpiry(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		set(t, st, "k", 1, 0)
		it, ok, err := st.Get(context.Background(), "k")
		if err != nil || !ok || it.TTL != 0 {
			t.Errorf("Get() = TTL %v, %v, %v; want 0, true, nil", it.TTL, ok, err)
		}
		if ttl := s.Client(t).PTTL(context.Background(), "ns:k").Val(); ttl != -1 {
			t.Errorf("PTTL(ns:k) = %v, want -1 (none)", ttl)
		}
	})
}

func TestNegative(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		const ttl = 30 * time.Second
		err := st.Write(ctx, []remote.SetOp{{Key: "gone", Data: st.EncodeNegative(ttl), TTL: ttl}}, nil, "", nil)
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		it, ok, err := st.Get(ctx, "gone")
		if err != nil || !ok || it.Kind != remote.KindNegative || it.TTL > ttl || it.TTL < ttl-5*time.Second {
			t.Fatalf("Get() = %+v, %v, %v; want a negative item with TTL about %v", it, ok, err, ttl)
		}
		var dst int
		var de *remote.DecodeError
		if err := st.Decode(it, &dst); !errors.As(err, &de) {
			t.Errorf("Decode(negative) = %v, want *DecodeError", err)
		}
	})
}

func TestValueSize(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	tests := []struct {
		name    string
		disable bool
		give    string
		wantErr bool
	}{
		{"fits", false, strings.Repeat("x", 900), false},
		{"too big", true, strings.Repeat("x", 1100), true},
		// Compressible, but MaxValueSize bounds the value before compression too.
		{"too big before compression", false, strings.Repeat("x", 1100), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t, rdb, remote.Options{MaxValueSize: 1024, CompressThreshold: 64, DisableCompression: tt.disable})
			_, err := st.Encode("k", tt.give, 0)
			var ve *remote.ValueSizeError
			if errors.As(err, &ve) != tt.wantErr {
				t.Fatalf("Encode(%d bytes) = %v, want ValueSizeError %v", len(tt.give), err, tt.wantErr)
			}
			if tt.wantErr && (ve.Key != "k" || ve.Limit != 1024 || ve.Size != 13+len(tt.give)+2) {
				t.Errorf("ValueSizeError = %+v, want key k, size %d, limit 1024", ve, 13+len(tt.give)+2)
			}
		})
	}
	st := newStore(t, rdb, remote.Options{MaxValueSize: 100})
	var ve *remote.ValueSizeError
	err := st.Write(context.Background(), []remote.SetOp{{Key: "k", Data: make([]byte, 101)}}, nil, "", nil)
	if !errors.As(err, &ve) {
		t.Errorf("Write(101 bytes) = %v, want *ValueSizeError", err)
	}
}

func TestGetMany(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		set(t, st, "a", "A", time.Minute)
		set(t, st, "c", "C", time.Minute)
		keys := []string{"a", "b", "c", "a"}
		items, ok, err := st.GetMany(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, len(keys))
		for i := range keys {
			if ok[i] {
				if err := st.Decode(items[i], &got[i]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if want := []string{"A", "", "C", "A"}; fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(ok) != "[true false true true]" {
			t.Errorf("GetMany(%q) = %q, %v; want %q", keys, got, ok, want)
		}
		if items, ok, err := st.GetMany(ctx, nil); len(items) != 0 || len(ok) != 0 || err != nil {
			t.Errorf("GetMany(nil) = %v, %v, %v", items, ok, err)
		}
	})
}

// countHook counts commands and pipelines sent through a client: each is
// one round trip.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

func TestGetManyIsOneRoundTrip(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		rdb := s.Client(t)
		st := newStore(t, rdb, remote.Options{})
		keys := make([]string, 100)
		for i := range keys {
			keys[i] = fmt.Sprint("k", i)
			if i%2 == 0 {
				set(t, st, keys[i], i, time.Minute)
			}
		}
		hook := &countHook{}
		rdb.AddHook(hook)
		rdb.Ping(context.Background()) // dials now if it must; dialling runs HELLO through the hook
		hook.n.Store(0)
		before := st.Stats().RoundTrips
		_, ok, err := st.GetMany(context.Background(), keys)
		if err != nil || !ok[0] || ok[1] {
			t.Fatalf("GetMany() = %v, %v", ok[:2], err)
		}
		if got := st.Stats().RoundTrips - before; got != 1 {
			t.Errorf("RoundTrips grew by %d, want 1", got)
		}
		if got := hook.n.Load(); got != 1 {
			t.Errorf("client sent %d commands or pipelines, want 1", got)
		}
	})
}

func TestLatencyPerOp(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		set(t, st, "v", 1, time.Minute)
		st.Get(ctx, "v")
		st.GetMany(ctx, []string{"v", "w"})
		token := grant(t, st, "a")
		data, _ := st.Encode("a", 1, time.Minute)
		st.Fill(ctx, "a", token, data, time.Minute)
		st.Release(ctx, "a", token)
		if _, err := st.BeginRefresh(ctx, "v", 1, time.Second); err != nil {
			t.Fatal(err)
		}
		lat := st.Latency()
		for _, op := range []string{"get", "get_many", "write", "lease", "fill", "release", "refresh"} {
			if lat[op].Count == 0 {
				t.Errorf("Latency()[%q].Count = 0, want at least 1", op)
			}
		}
		if len(lat) != 7 {
			t.Errorf("Latency() has %d ops, want 7", len(lat))
		}
	})
}

// TestReservedKeys: keys starting with a NUL byte are the cache's own
// (fences, refresh locks) and are refused, before any round trip.
func TestReservedKeys(t *testing.T) {
	st := newStore(t, redistest.Mini(t).Client(t), remote.Options{})
	var ke *remote.KeyError
	if err := st.CheckKey("\x00fence:x"); !errors.As(err, &ke) || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("CheckKey(NUL...) = %v, want a reserved *KeyError", err)
	}
	if err := st.CheckKey("a\x00b"); err != nil {
		t.Errorf("CheckKey(a NUL b) = %v, want nil: only a leading NUL is reserved", err)
	}
}
