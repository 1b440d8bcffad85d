package invalidation

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

// logBuffer is an io.Writer safe for the bus's goroutines and the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestLogRateLimited(t *testing.T) {
	var out logBuffer
	b := &Bus{start: time.Now(), nodeID: testOrigin, opts: Options{Logger: slog.New(slog.NewTextHandler(&out, nil))}}
	for range 3 {
		b.log(event{kind: eventReconnect})
	}
	b.log(event{kind: eventLost, args: []any{"err", "boom"}})
	got := out.String()
	if n := strings.Count(got, "subscribed again"); n != 1 {
		t.Errorf("reconnect logged %d times in a burst, want 1:\n%s", n, got)
	}
	if !strings.Contains(got, "subscription lost") || !strings.Contains(got, "err=boom") {
		t.Errorf("lost event missing from log:\n%s", got)
	}
	if n := b.logs[eventReconnect].suppressed.Load(); n != 2 {
		t.Errorf("suppressed = %d, want 2", n)
	}
}

func TestLogsReconnect(t *testing.T) {
	s := redistest.Real(t)
	var out logBuffer
	o := fastOptions
	o.Logger = slog.New(slog.NewTextHandler(&out, nil))
	b := newBus(t, s, o)
	waitFor(t, "Usable", b.Usable)
	s.KillPubSubClients(t)
	waitFor(t, "Usable again after a reconnect", func() bool { return b.Stats().Reconnects > 0 && b.Usable() })
	waitFor(t, "the log lines", func() bool {
		got := out.String()
		return strings.Contains(got, "subscribed again") && strings.Contains(got, "L1 usable again")
	})
	if got := out.String(); !strings.Contains(got, "node="+b.NodeID()) {
		t.Errorf("log lines do not name the node:\n%s", got)
	}
}

// TestRegistrationChurn registers and unregisters handlers while messages
// flow; run with -race, it checks the handler table's locking, and that a
// closed registration is never called again.
func TestRegistrationChurn(t *testing.T) {
	s := redistest.Real(t)
	a, b := newBus(t, s, Options{}), newBus(t, s, Options{})
	keep := register(t, b, "ns")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	raw := s.Client(t)
	defer func() {
		close(stop)
		wg.Wait()
	}()
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Errors show up as the test timing out waiting for a message.
			_ = raw.Publish(context.Background(), a.Channel(), a.Message("ns", OpDelete, []string{"k"})).Err()
		}
	})
	for range 200 {
		r := &recorder{}
		reg, err := b.Register("ns", r)
		if err != nil {
			t.Fatal(err)
		}
		reg.Close()
		_, before, _ := r.counts()
		_, n, _ := keep.counts()
		waitFor(t, "the next message", func() bool { _, m, _ := keep.counts(); return m > n })
		if _, after, _ := r.counts(); after != before {
			t.Fatalf("closed registration called: %d keys, then %d", before, after)
		}
	}
}
