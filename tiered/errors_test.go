package tiered

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
)

// TestPanicErrorUnwrap: a loader that panics with an error hands every
// waiter a *PanicError through which errors.Is and errors.As see that error.
func TestPanicErrorUnwrap(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, nil)
	_, err := c.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) {
		panic(io.ErrUnexpectedEOF)
	})
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("GetOrLoad of a panicking loader = %v, want a *PanicError", err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("errors.Is(%v, io.ErrUnexpectedEOF) = false, want true through Unwrap", err)
	}
	if !strings.HasPrefix(err.Error(), "tiered load: loader panicked: unexpected EOF") {
		t.Errorf("error = %q, want it to start with tiered load: loader panicked", err)
	}
	if (&PanicError{Value: "not an error"}).Unwrap() != nil {
		t.Errorf("Unwrap of a non-error panic value is not nil")
	}
}

// TestInputErrorsNameTheOperation: bad input gets a typed error, wrapped in
// "tiered <method>", and no internal package's name.
func TestInputErrorsNameTheOperation(t *testing.T) {
	s := redistest.Mini(t)
	c := newNode[string](t, s, func(o *Options) { o.MaxValueSize = 64 })
	ctx := context.Background()
	load := func(context.Context, string) (string, error) { return "v", nil }
	loadMany := func(context.Context, []string) (map[string]string, error) { return nil, nil }
	big := strings.Repeat("x", 100)
	var keyErr *KeyError
	var sizeErr *ValueSizeError
	var optErr *OptionError
	tests := []struct {
		name string
		give func() error
		want string
		as   any
	}{
		{"Get", func() error { _, err := c.Get(ctx, ""); return err }, "tiered get: key is empty", &keyErr},
		{"GetMany", func() error { _, err := c.GetMany(ctx, []string{"a", ""}); return err }, "tiered get many: key is empty", &keyErr},
		{"GetOrLoad", func() error { _, err := c.GetOrLoad(ctx, "", load); return err }, "tiered get or load: key is empty", &keyErr},
		{"GetOrLoadMany", func() error { _, err := c.GetOrLoadMany(ctx, []string{""}, loadMany); return err }, "tiered get or load many: key is empty", &keyErr},
		{"Set key", func() error { return c.Set(ctx, strings.Repeat("k", 2000), "v") }, `tiered set: key "kkkk`, &keyErr},
		{"Set size", func() error { return c.Set(ctx, "k", big) }, `tiered set: value of key "k" is`, &sizeErr},
		{"SetMany size", func() error { return c.SetMany(ctx, map[string]string{"a": "v", "b": big}) }, `tiered set many: value of key "b" is`, &sizeErr},
		{"Set option", func() error { return c.Set(ctx, "k", "v", WithTTL(0)) }, "tiered set: WithTTL: ttl must be positive, got 0s", &optErr},
		{"Delete", func() error { return c.Delete(ctx, "a", "") }, "tiered delete: key is empty", &keyErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give()
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("%s error = %v, want it to start with %q", tt.name, err, tt.want)
			}
			if !errors.As(err, tt.as) {
				t.Errorf("%s error %q: errors.As(%T) = false", tt.name, err, tt.as)
			}
			if strings.Contains(err.Error(), "remote") {
				t.Errorf("%s error %q names package remote", tt.name, err)
			}
		})
	}
}

// TestRedisErrorsNameTheOperation: a failed round trip reads "tiered
// <method> <keys>: <cause>", and once the breaker opens, ErrUnavailable
// is matched with errors.Is.
func TestRedisErrorsNameTheOperation(t *testing.T) {
	s := redistest.Mini(t)
	bus, err := invalidation.New(context.Background(), invalidation.Options{Redis: s.Client(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	// A Redis nobody listens on: every call fails at once, refused.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	c, err := New[string](Options{Redis: dead, Namespace: "n", Bus: bus, BreakerThreshold: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	tests := []struct {
		name string
		give func() error
		want string
	}{
		{"Get", func() error { _, err := c.Get(ctx, "k"); return err }, `tiered get "k": `},
		{"GetMany", func() error { _, err := c.GetMany(ctx, []string{"a", "b"}); return err }, `tiered get many (2 keys, first "a"): `},
		{"Set", func() error { return c.Set(ctx, "k", "v") }, `tiered set "k": `},
		{"SetMany", func() error { return c.SetMany(ctx, map[string]string{"b": "v", "a": "v"}) }, `tiered set many (2 keys, first "a"): `},
		{"Delete", func() error { return c.Delete(ctx, "k") }, `tiered delete "k": `},
		{"Clear", func() error { return c.Clear(ctx) }, `tiered clear: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give()
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("%s error = %v, want it to start with %q", tt.name, err, tt.want)
			}
			if strings.Contains(err.Error(), "remote") {
				t.Errorf("%s error %q names package remote", tt.name, err)
			}
		})
	}

	// The breaker: a cache that opens it after one failure.
	c2, err := New[string](Options{Redis: dead, Namespace: "n2", Bus: bus, BreakerThreshold: 1, BreakerMinOpen: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Close() })
	_, _ = c2.Get(ctx, "k") // fails, and opens the breaker
	_, err = c2.Get(ctx, "k")
	t.Logf("Get with the breaker open: %v", err)
	if !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), `tiered get "k": `) {
		t.Errorf("Get with the breaker open = %v, want ErrUnavailable wrapped as tiered get", err)
	}
	if err := c2.Set(ctx, "k", "v"); !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "remote") {
		t.Errorf("Set with the breaker open = %v, want ErrUnavailable, no remote", err)
	}
}
