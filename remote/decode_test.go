package remote_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// garbage is stored bytes that are not an envelope a JSON Store accepts.
var garbage = []struct {
	name string
	give string
}{
	{"text", "hello, world"},
	{"json", `{"id":1}`},
	{"empty", ""},
	{"truncated header", "\xc1\x01\x01\x01\x00\x00\x00"},
	{"version 9", "\xc1\x09\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00{}"},
	{"unknown kind", "\xc1\x01\x07\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00{}"},
	{"msgpack codec", "\xc1\x01\x01\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80"},
}

func TestGetGarbage(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		raw := s.Client(t)
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		for _, tt := range garbage {
			t.Run(tt.name, func(t *testing.T) {
				if err := raw.Set(ctx, "ns:bad", tt.give, 0).Err(); err != nil {
					t.Fatal(err)
				}
				before := st.Stats().DecodeErrors
				_, ok, err := st.Get(ctx, "bad")
				var de *remote.DecodeError
				if ok || !errors.As(err, &de) || de.Key != "bad" {
					t.Errorf("Get(garbage) = %v, %v; want false, *DecodeError for key bad", ok, err)
				}
				items, oks, err := st.GetMany(ctx, []string{"bad", "missing", "bad"})
				if err != nil || oks[0] || oks[1] || oks[2] || len(items) != 3 {
					t.Errorf("GetMany(garbage) = %v, %v; want three misses, nil", oks, err)
				}
				if got := st.Stats().DecodeErrors - before; got != 3 {
					t.Errorf("DecodeErrors grew by %d, want 3", got)
				}
			})
		}
	})
}

func TestDecodeCorruptPayload(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"corrupt compression", "\xc1\x01\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\x0f"},
		{"bad json", "\xc1\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00{\"id\":"},
	}
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		raw := s.Client(t)
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				raw.Set(ctx, "ns:bad", tt.give, 0)
				it, ok, err := st.Get(ctx, "bad")
				if !ok || err != nil {
					t.Fatalf("Get() = %v, %v; want a value (the header is valid)", ok, err)
				}
				before := st.Stats().DecodeErrors
				var p product
				var de *remote.DecodeError
				if err := st.Decode(it, &p); !errors.As(err, &de) {
					t.Errorf("Decode() = %v, want *DecodeError", err)
				}
				if got := st.Stats().DecodeErrors - before; got != 1 {
					t.Errorf("DecodeErrors grew by %d, want 1", got)
				}
			})
		}
	})
}

func TestExpiredHeaderIsMiss(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		raw := s.Client(t)
		st := newStore(t, s.Client(t), remote.Options{})
		ctx := context.Background()
		// Expired at Unix millisecond 1, as a writer with a slow clock might say.
		raw.Set(ctx, "ns:old", "\xc1\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x011", 0)
		_, ok, err := st.Get(ctx, "old")
		if ok || err != nil {
			t.Errorf("Get(expired) = %v, %v; want false, nil", ok, err)
		}
		if n := st.Stats().DecodeErrors; n != 0 {
			t.Errorf("DecodeErrors = %d, want 0", n)
		}
	})
}
