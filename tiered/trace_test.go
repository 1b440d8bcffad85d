package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// recorder is a Tracer that keeps what it was told.
type recorder struct {
	mu    sync.Mutex
	works []string // "op[/l2op] keys=n err=..." in the order they ended
}

type traceKey struct{}

func (r *recorder) trace(ctx context.Context, w Work) (context.Context, func(error)) {
	name := w.Op
	if w.L2Op != "" {
		name += "/" + w.L2Op
	}
	if w.Namespace != "test" {
		name += " namespace=" + w.Namespace
	}
	return context.WithValue(ctx, traceKey{}, name), func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.works = append(r.works, fmt.Sprintf("%s keys=%d err=%v", name, w.Keys, err != nil))
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.works
	r.works = nil
	return w
}

// TestTracer: a miss is traced as its L2 rounds and its load, with key
// counts, and the loader runs under the load's context
// (TestHitAllocsWithTracer checks that an L1 hit is not traced).
func TestTracer(t *testing.T) {
	s := redistest.Mini(t)
	var r recorder
	c := newNode[string](t, s, func(o *Options) { o.Tracer = r.trace })
	ctx := context.Background()
	var loaderSaw any
	v, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, _ string) (string, error) {
		loaderSaw = ctx.Value(traceKey{})
		return "v", nil
	})
	if err != nil || v != "v" {
		t.Fatalf("GetOrLoad = %q, %v", v, err)
	}
	if loaderSaw != "load" {
		t.Errorf("loader's context carries %v, want the load's trace", loaderSaw)
	}
	want := []string{"l2/lease keys=1 err=false", "load keys=1 err=false", "l2/fill keys=1 err=false"}
	if got := r.take(); !slices.Equal(got, want) {
		t.Errorf("a miss traced %q, want %q", got, want)
	}

	if _, err := c.GetOrLoadMany(ctx, []string{"a", "b", "c"}, func(context.Context, []string) (map[string]string, error) {
		return nil, errors.New("db down")
	}); err == nil {
		t.Fatal("GetOrLoadMany with a failing loader = nil error")
	}
	want = []string{"l2/lease keys=3 err=false", "load keys=3 err=true", "l2/release keys=3 err=false"}
	if got := r.take(); !slices.Equal(got, want) {
		t.Errorf("a failed batch load traced %q, want %q", got, want)
	}

	if err := c.SetMany(ctx, map[string]string{"a": "1", "b": "2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetMany(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	want = []string{"l2/write keys=2 err=false", "l2/get_many keys=2 err=false"}
	if got := r.take(); !slices.Equal(got, want) {
		t.Errorf("SetMany and GetMany traced %q, want %q", got, want)
	}
}

// TestTracerLeaseWait: a node that finds another's lease traces the wait,
// with the number of keys it waited for.
func TestTracerLeaseWait(t *testing.T) {
	s := redistest.Mini(t)
	var r recorder
	a := newNode[string](t, s, nil)
	b := newNode[string](t, s, func(o *Options) { o.Tracer = r.trace; o.LeaseWait = 10 * time.Second })
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = a.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
			close(started)
			<-release
			return "from-a", nil
		})
	}()
	<-started
	got := make(chan string, 1)
	go func() {
		v, _ := b.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "from-b", nil })
		got <- v
	}()
	eventually(t, 5*time.Second, func() bool { return b.Stats().LeaseWaits == 1 }, "b waits on a's lease")
	close(release)
	<-done
	if v := <-got; v != "from-a" {
		t.Errorf("b got %q, want from-a", v)
	}
	// b's value can reach it before the flight's deferred end of the
	// lease-wait trace has run: wait for the trace, then check it.
	var works []string
	eventually(t, 5*time.Second, func() bool {
		works = append(works, r.take()...)
		return slices.Contains(works, "lease_wait keys=1 err=false")
	}, "b's lease_wait trace ends")
	if slices.ContainsFunc(works, func(w string) bool { return w[:4] == "load" }) {
		t.Errorf("b traced %q, want a lease_wait of 1 key and no load", works)
	}
}

// TestHitAllocsWithTracer: a Tracer costs an L1 hit nothing.
func TestHitAllocsWithTracer(t *testing.T) {
	s := redistest.Mini(t)
	var r recorder
	c := newNode[*product](t, s, func(o *Options) { o.Tracer = r.trace })
	warmL1(t, c, "42")
	r.take()
	ctx := context.Background()
	loader := func(context.Context, string) (*product, error) { return nil, nil }
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.GetOrLoad(ctx, "42", loader); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("L1 hit with a Tracer: %v allocs per GetOrLoad, want 0", allocs)
	}
	if got := r.take(); len(got) != 0 {
		t.Errorf("L1 hits traced %q, want nothing", got)
	}
}
