package tiered

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestReviewLeastPrivilegeACLCluster: the README's "Least privilege"
// section gives one ACL line as "enough" for the cache, and DESIGN asks for
// "any client, any account ... so a least-privilege ACL works", with
// Cluster a first-class deployment. On Redis Cluster the line is not
// enough: go-redis's ClusterClient must read the slot map (CLUSTER SLOTS
// or CLUSTER SHARDS), which the line does not grant, so with exactly that
// ACL on every node the cache never proves its bus, and every Set fails.
// TestLeastPrivilegeACL runs a standalone server only.
//
// Fails: the Set returns the cluster client's NOPERM, the bus is never
// usable, and ACL LOG names the cluster command. Fix: add
// "+cluster|slots +cluster|shards" (and "+readonly" for clients that read
// replicas) to the README's line for Cluster, or say it is for a single
// server, and run TestLeastPrivilegeACL on a cluster too.
func TestReviewLeastPrivilegeACLCluster(t *testing.T) {
	cl := redistest.NewCluster(t)
	ctx := context.Background()
	args := []any{"ACL", "SETUSER", "app", "reset", "on", ">pw"}
	for _, r := range leastPrivilege {
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
