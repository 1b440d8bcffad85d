package tiered

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// clusterClient is a cluster client on cl with the test timeouts, changed
// by mod, with hook (if any) on every node client, closed at cleanup.
func clusterClient(t *testing.T, cl *redistest.Cluster, mod func(*redis.ClusterOptions), hook redis.Hook) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{
		Addrs: cl.Addrs, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
	}
	if mod != nil {
		mod(o)
	}
	cc := redis.NewClusterClient(o)
	if hook != nil {
		// internal/publish sends through a node's own client, which the
		// cluster client's hooks do not see.
		cc.OnNewNode(func(n *redis.Client) { n.AddHook(hook) })
	}
	t.Cleanup(func() { _ = cc.Close() })
	if err := cc.ForEachShard(context.Background(), func(ctx context.Context, n *redis.Client) error {
		return n.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("cluster client: %v", err)
	}
	return cc
}

// TestReplicaReadsFillFromMaster: a reader whose Cluster client reads
// replicas (ReadOnly) hears the invalidation of a write while the replica
// still lags (its replication paused with CLIENT PAUSE WRITE). The fill
// that follows must not read the replica's old value into L1, where it
// would stay for LocalTTL after the replica caught up.
func TestReplicaReadsFillFromMaster(t *testing.T) {
	cl := redistest.NewClusterWithReplicas(t)
	ctx := context.Background()
	replica := replicaOf(t, cl, "test:k")
	writer := newCacheOn(t, cl.Client(t), nil)
	// Made after the replica joined, so its slot map lists the replica.
	reader := newCacheOn(t, clusterClient(t, cl, func(o *redis.ClusterOptions) { o.ReadOnly = true }, nil), nil)
	if err := writer.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool {
		v, err := replica.Get(ctx, "test:k").Result()
		return err == nil && strings.HasSuffix(v, `"old"`)
	}, "replica has the old value")
	warm(t, []*Cache[string]{reader}, "k", "old")

	if err := replica.Do(ctx, "CLIENT", "PAUSE", 3000, "WRITE").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE on the replica: %v", err)
	}
	t.Cleanup(func() { _ = replica.Do(context.Background(), "CLIENT", "UNPAUSE").Err() })

	before := reader.Stats().Invalidations
	if err := writer.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool { return reader.Stats().Invalidations > before }, "reader hears the write")
	if v, err := replica.Get(ctx, "test:k").Result(); err != nil || !strings.HasSuffix(v, `"old"`) {
		t.Fatalf("paused replica has %q, %v; want it still behind, with the old value", v, err)
	}
	if v, err := reader.Get(ctx, "k"); err != nil || v != "new" {
		t.Errorf("reader Get(k) after the invalidation, replica lagging = %q, %v; want new", v, err)
	}
	if err := replica.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, func() bool {
		v, err := replica.Get(ctx, "test:k").Result()
		return err == nil && strings.HasSuffix(v, `"new"`) // the JSON payload ends the envelope
	}, "replica catches up")
	if v, err := reader.Get(ctx, "k"); err != nil || v != "new" {
		t.Errorf("reader Get(k) after the replica caught up = %q, %v; want new", v, err)
	}
}

// replicaOf returns a client of a replica that serves key's slot and is
// in sync with its master, closed at cleanup. READONLY lets it answer
// reads for that slot.
func replicaOf(t *testing.T, cl *redistest.Cluster, key string) *redis.Client {
	t.Helper()
	ctx := context.Background()
	cc := cl.Client(t)
	slot, err := cc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Replicas join the slot map and sync after the cluster is up; nothing
	// announces either, so poll with a deadline.
	var r *redis.Client
	eventually(t, 10*time.Second, func() bool {
		//lint:ignore SA1019 CLUSTER SHARDS needs Redis 7; these tests run on older servers too
		slots, err := cc.ClusterSlots(ctx).Result()
		if err != nil {
			return false
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 1 {
				if r == nil {
					r = redis.NewClient(&redis.Options{Addr: s.Nodes[1].Addr, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
						return cn.ReadOnly(ctx).Err()
					}})
					t.Cleanup(func() { _ = r.Close() })
				}
				info, err := r.Info(ctx, "replication").Result()
				return err == nil && strings.Contains(info, "master_link_status:up")
			}
		}
		return false
	}, "a synced replica serves the key's slot")
	return r
}

// failPublish fails PUBLISH commands without sending them: the first n, or
// all of them when n is negative.
type failPublish struct {
	n      atomic.Int64
	failed atomic.Int64
}

func (*failPublish) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *failPublish) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "publish" && (h.n.Load() < 0 || h.n.Add(-1) >= 0) {
			h.failed.Add(1)
			err := errors.New("test: publish refused")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}
func (*failPublish) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// clusterWriter makes a cache on cl whose own PUBLISH commands are failed
// by hook, with a bus on a client of its own (which hook does not touch).
func clusterWriter(t *testing.T, cl *redistest.Cluster, hook *failPublish) *Cache[string] {
	t.Helper()
	rdb := clusterClient(t, cl, nil, hook)
	bus := newCacheOn(t, cl.Client(t), func(o *Options) { o.Namespace = "busowner" }).Bus()
	return newCacheOn(t, rdb, func(o *Options) { o.Bus = bus })
}

// TestClusterWriteAnnouncedWithoutPublish: on Cluster the keys are written
// on their nodes and the invalidation is published through the channel's
// node after them. If that publish never gets through, the write has still
// landed: other nodes must still drop the old value within MaxStaleness,
// because the write announces itself on the node where it executes.
func TestClusterWriteAnnouncedWithoutPublish(t *testing.T) {
	cl := redistest.NewCluster(t)
	hook := &failPublish{}
	hook.n.Store(-1)
	writer := clusterWriter(t, cl, hook)
	reader := newCacheOn(t, cl.Client(t), nil)
	ctx := context.Background()
	if err := writer.Set(ctx, "k", "old"); err == nil {
		t.Fatal("Set with every publish refused returned nil; want the publish error")
	}
	warm(t, []*Cache[string]{reader}, "k", "old")
	if err := writer.Set(ctx, "k", "new"); err == nil {
		t.Fatal("Set with every publish refused returned nil; want the publish error")
	}
	eventually(t, reader.opts.MaxStaleness, func() bool {
		v, err := reader.Get(ctx, "k")
		return err == nil && v == "new"
	}, "reader drops the old value though the publish failed")
}

// TestClusterPublishRetried: a publish after the writes that fails once is
// sent again, so the write succeeds and is announced.
func TestClusterPublishRetried(t *testing.T) {
	cl := redistest.NewCluster(t)
	hook := &failPublish{}
	writer := clusterWriter(t, cl, hook)
	ctx := context.Background()
	hook.n.Store(1)
	if err := writer.Set(ctx, "k", "v"); err != nil {
		t.Errorf("Set with one publish refused = %v; want nil after a retry", err)
	}
	if n := hook.failed.Load(); n != 1 {
		t.Errorf("%d publishes refused, want 1", n)
	}
}

// TestWrongTypeIsAMiss: a key of another Redis type (a list) under a cache
// key is a miss on every read path, never a Redis error.
func TestWrongTypeIsAMiss(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		c := newNode[string](t, s, nil)
		ctx := context.Background()
		if err := s.Client(t).RPush(ctx, "test:k", "x").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(list key) = %v, want ErrNotFound", err)
		}
		if m, err := c.GetMany(ctx, []string{"k"}); err != nil || len(m) != 0 {
			t.Errorf("GetMany(list key) = %v, %v; want empty, nil", m, err)
		}
		v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "loaded", nil })
		if err != nil || v != "loaded" {
			t.Errorf("GetOrLoad(list key) = %q, %v; want loaded, nil", v, err)
		}
	})
}
