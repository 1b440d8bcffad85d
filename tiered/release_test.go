package tiered

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestLeaseFreedAfterOutage: a node's lease command lands just as Redis
// becomes unreachable, so its reply is lost, and neither its fill nor its
// release gets through while it loads. The node answers its caller from
// the loader, as it should, but its marker stays in L2. Once Redis is back
// the node must release it: left for LeaseTTL, it made every other node
// wait LeaseWait for the key, past its callers' deadlines (tierbench's
// outage scenario: reads after healing failed with their own 2 s
// deadline, on a key holding a lease taken at the fault).
func TestLeaseFreedAfterOutage(t *testing.T) {
	s := redistest.Real(t)
	long := func(o *Options) {
		o.LeaseTTL = time.Minute
		o.LeaseWait = 30 * time.Second
	}
	c, p := proxied(t, s, func(o *Options) {
		long(o)
		o.RedisTimeout = 200 * time.Millisecond
	})
	other := newNode[string](t, s, long)
	rdb := s.Client(t)
	ctx := context.Background()

	p.DelayReplies(time.Second) // the lease lands; its reply is late...
	v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
		p.Blackhole(true) // ...and thrown away, as are the fill and the release
		return "loaded", nil
	})
	if err != nil || v != "loaded" {
		t.Fatalf("GetOrLoad during the fault = %q, %v; want loaded from the loader", v, err)
	}
	if raw, err := rdb.Get(ctx, c.l2.Key("k")).Result(); err != nil || !strings.HasPrefix(raw, "\xc1\x01\x03") {
		t.Fatalf("L2 holds %q, %v after the fault; want c's lease marker (the test's premise)", raw, err)
	}

	p.Pass() // Redis is back; c has no caller of its own to notice it
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	got, err := other.GetOrLoad(rctx, "k", func(context.Context, string) (string, error) { return "other", nil })
	if err != nil || got != "other" {
		t.Errorf("GetOrLoad on another node after the fault = %q, %v; want other, loaded once c released its lease", got, err)
	}
}
