//go:build race

package remote

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestReviewAbandonedCallRacesResult: on a client without
// ContextTimeoutEnabled (the default) every round trip runs on a goroutine
// of its own (detach.go), and do's doc says "the caller must not read
// anything fn writes (commands, captured variables)" once the call is
// abandoned. evalKeys (Fill, Release, BeginRefresh, FinishRefresh,
// AbandonRefresh, the lease script) and leaseOne (GetOrLease) break that
// rule: on an abandoned call they still `return res, now, err`, reading the
// captured res that the abandoned goroutine writes when the client's reply
// finally arrives. The caller ignores the value, but the read itself is a
// data race, and the race detector fails every -race run that abandons one
// of these calls (TestDefaultClientFailsFast included, whenever a lease
// command is abandoned).
//
// Only meaningful under -race (hence the build tag). Each subtest makes a
// call whose reply the proxy delays past Options.Timeout, then closes the
// Store, which waits for the abandoned goroutine to write res: "DATA RACE"
// between the write in the closure and the read in evalKeys / leaseOne.
// Fix: return nil (not res / again) when isAbandoned(err), as Get and
// GetMany already do.
func TestReviewAbandonedCallRacesResult(t *testing.T) {
	tests := []struct {
		name string
		call func(ctx context.Context, st *Store) error
	}{
		{"Release/evalKeys", func(ctx context.Context, st *Store) error {
			return st.Release(ctx, "k", make([]byte, tokenLen))
		}},
		{"GetOrLease/leaseOne", func(ctx context.Context, st *Store) error {
			_, err := st.GetOrLease(ctx, "k", time.Minute)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Real(t)
			p, err := faultproxy.Start(s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			// A client as its docs build it: no ContextTimeoutEnabled.
			rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, PoolSize: 1})
			t.Cleanup(func() { _ = rdb.Close() })
			st, err := New(Options{Redis: rdb, Namespace: "rvd", Timeout: 50 * time.Millisecond, DisableBreaker: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := tt.call(ctx, st); err != nil { // loads the script, warms the connection
				t.Fatalf("first call: %v", err)
			}
			if err := st.Release(ctx, "k", make([]byte, tokenLen)); err != nil { // frees a lease GetOrLease took
				t.Fatal(err)
			}
			p.DelayReplies(300 * time.Millisecond) // past Timeout, well within the client's ReadTimeout (3s)
			err = tt.call(ctx, st)
			if !isAbandoned(err) {
				t.Fatalf("call with a reply delayed past Timeout = %v; want an abandoned call", err)
			}
			st.Close() // waits for the abandoned goroutine, which writes res when the reply arrives
			p.Pass()
		})
	}
}
