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
