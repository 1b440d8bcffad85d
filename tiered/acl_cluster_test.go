package tiered

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestLeastPrivilegeACLCluster: on Redis Cluster the client must also read
// the slot map (CLUSTER SLOTS or CLUSTER SHARDS, and READONLY for a client
// that reads replicas), which the README's Cluster line adds to the
// single-server one. A review found the single-server line failing there
// (the bus never proved itself, every Set failed with NOPERM on
// cluster|slots); with the Cluster line the cache works and ACL LOG stays
// empty.
func TestLeastPrivilegeACLCluster(t *testing.T) {
	cl := redistest.NewCluster(t)
	ctx := context.Background()
	args := []any{"ACL", "SETUSER", "app", "reset", "on", ">pw"}
	for _, r := range append(slices.Clone(leastPrivilege), clusterPrivilege...) {
		args = append(args, r)
	}
	for _, a := range cl.Addrs {
		if err := cl.Node(t, a).Client(t).Do(ctx, args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER on %s: %v", a, err)
		}
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs, Username: "app", Password: "pw"})
	t.Cleanup(func() { _ = rdb.Close() })
	c, err := New[string](Options{Redis: rdb, Namespace: "test", HeartbeatInterval: 50 * time.Millisecond, MaxStaleness: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	werr := c.WaitReady(wctx)
	serr := c.Set(ctx, "k", "v")
	if werr != nil || serr != nil {
		var log []string
		for _, a := range cl.Addrs {
			entries, _ := cl.Node(t, a).Client(t).Do(ctx, "ACL", "LOG").Slice()
			for _, e := range entries {
				if m, ok := e.(map[any]any); ok {
					log = append(log, fmt.Sprintf("%v %v", m["reason"], m["object"]))
				} else if l, ok := e.([]any); ok && len(l) >= 6 {
					log = append(log, fmt.Sprintf("%v %v", l[1], l[5]))
				}
			}
		}
		t.Errorf("with exactly the README's least-privilege ACL on a Cluster: WaitReady = %v; Set = %v; ACL LOG: %v", werr, serr, log)
	}
}
