package tiered

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// waitOnce has node a load key with a loader that blocks until released,
// node b ask for it meanwhile (it waits on a's lease), then releases a's
// loader, and returns how long after a's call returned (its fill done) b's
// call returned.
func waitOnce(tb testing.TB, a, b *Cache[string], key string) time.Duration {
	tb.Helper()
	ctx := context.Background()
	release := make(chan struct{})
	loading := make(chan struct{})
	aDone := make(chan time.Time, 1)
	go func() {
		_, _ = a.GetOrLoad(ctx, key, func(context.Context, string) (string, error) {
			close(loading)
			<-release
			return "v", nil
		})
		aDone <- time.Now()
	}()
	<-loading
	waits := b.Stats().LeaseWaits
	bDone := make(chan time.Time, 1)
	go func() {
		_, _ = b.GetOrLoad(ctx, key, func(context.Context, string) (string, error) { return "b's own", nil })
		bDone <- time.Now()
	}()
	eventually(tb, 5*time.Second, func() bool { return b.Stats().LeaseWaits > waits }, "b waits on a's lease")
	close(release)
	ta, tb2 := <-aDone, <-bDone
	return tb2.Sub(ta)
}

// TestLeaseWaiterWakes: a node waiting on another node's lease is told when
// the value lands, and does not wait for its next poll (up to 10 ms).
func TestLeaseWaiterWakes(t *testing.T) {
	s := redistest.Real(t)
	a := newNode[string](t, s, nil)
	b := newNode[string](t, s, nil)
	var lags []time.Duration
	for i := range 20 {
		lags = append(lags, waitOnce(t, a, b, fmt.Sprint("k", i)))
	}
	slices.Sort(lags)
	t.Logf("b's value after a's fill: p50 %v, max %v; wakeups %d of %d waits", lags[len(lags)/2], lags[len(lags)-1], b.Stats().LeaseWakeups, b.Stats().LeaseWaits)
	if st := b.Stats(); st.LeaseWakeups == 0 || st.LeaseWaitHits < 20 {
		t.Errorf("LeaseWakeups %d, LeaseWaitHits %d: b was not woken by a's fills", st.LeaseWakeups, st.LeaseWaitHits)
	}
}

// BenchmarkLeaseWaiter measures how long after the lease holder's fill a
// node waiting on it gets the value (the holder's load blocks until the
// waiter waits).
//
//	go test -run '^$' -bench LeaseWaiter -benchtime 300x ./tiered
func BenchmarkLeaseWaiter(b *testing.B) {
	s := redistest.Real(b)
	x := newNode[string](b, s, nil)
	y := newNode[string](b, s, nil)
	var lags []time.Duration
	for i := 0; b.Loop(); i++ {
		lags = append(lags, waitOnce(b, x, y, fmt.Sprint("k", i)))
	}
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds()), "p99-us")
}
