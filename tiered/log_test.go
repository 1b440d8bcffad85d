package tiered

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// syncBuffer is a bytes.Buffer safe for the bus and cache goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFailureLogRateLimited: a burst of Redis failures logs once, not per
// request, and recovery logs once.
func TestFailureLogRateLimited(t *testing.T) {
	s := redistest.Mini(t)
	var buf syncBuffer
	c := newNode[string](t, s, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		o.RedisTimeout = 100 * time.Millisecond
	})
	ctx := context.Background()
	s.Mini().Close()
	for range 20 {
		_, _ = c.Get(ctx, "k")
	}
	if n := strings.Count(buf.String(), "redis calls failing"); n != 1 {
		t.Errorf("20 failed Gets logged %d failure records, want 1:\n%s", n, buf.String())
	}
	if err := s.Mini().Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		_, err := c.Get(ctx, "k")
		return err == ErrNotFound
	}, "Redis answers again")
	_, _ = c.Get(ctx, "k")
	if n := strings.Count(buf.String(), "redis calls succeed again"); n != 1 {
		t.Errorf("recovery logged %d records, want 1:\n%s", n, buf.String())
	}
}

// ctxHandler is a slog handler that keeps, for each record, the value its
// context carries under traceIDKey, as a handler adding trace ids would.
type ctxHandler struct {
	mu   *sync.Mutex
	seen *[]string
}

type traceIDKey struct{}

func (h ctxHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	id, _ := ctx.Value(traceIDKey{}).(string)
	h.mu.Lock()
	*h.seen = append(*h.seen, r.Message+" trace="+id)
	h.mu.Unlock()
	return nil
}
func (h ctxHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h ctxHandler) WithGroup(string) slog.Handler      { return h }

// TestLogCarriesCallerContext: the record of a failure a call noticed is
// logged with that call's context, so a handler can add its trace id.
func TestLogCarriesCallerContext(t *testing.T) {
	s := redistest.Mini(t)
	var mu sync.Mutex
	var seen []string
	c := newNode[string](t, s, func(o *Options) {
		o.Logger = slog.New(ctxHandler{&mu, &seen})
		o.RedisTimeout = 100 * time.Millisecond
	})
	s.Mini().SetError("ERR injected") // every command fails from now on
	defer s.Mini().SetError("")
	ctx := context.WithValue(context.Background(), traceIDKey{}, "abc123")
	if _, err := c.Get(ctx, "k"); err == nil {
		t.Fatal("Get with every command failing = nil error")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range seen {
		if strings.HasPrefix(r, "tiercache: redis calls failing") {
			if !strings.HasSuffix(r, " trace=abc123") {
				t.Errorf("failure record %q lacks the caller's trace id", r)
			}
			return
		}
	}
	t.Errorf("no failure record among %q", seen)
}
