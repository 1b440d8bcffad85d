package redistest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunSetGet(t *testing.T) {
	Run(t, func(t *testing.T, s *Server) {
		c := s.Client(t)
		ctx := context.Background()
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		got, err := c.Get(ctx, "k").Result()
		if err != nil || got != "v" {
			t.Fatalf("GET k = %q, %v; want %q", got, err, "v")
		}
	})
}

func TestRestartRealEmpties(t *testing.T) {
	s := Real(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Restart(t)
	n, err := c.Exists(ctx, "k").Result()
	if err != nil {
		t.Fatalf("EXISTS after restart: %v", err)
	}
	if n != 0 {
		t.Errorf("EXISTS k after restart = %d, want 0 (no persistence)", n)
	}
}

func TestKillPubSubClients(t *testing.T) {
	s := Real(t)
	c := s.Client(t)
	ctx := context.Background()
	sub := c.Subscribe(ctx, "ch")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if n := s.KillPubSubClients(t); n != 1 {
		t.Errorf("KillPubSubClients() = %d, want 1", n)
	}
}

func TestPause(t *testing.T) {
	s := Real(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	s.Pause(t)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.Set(short, "k", "v", 0).Err(); err == nil {
		t.Errorf("SET on a paused server succeeded, want a timeout")
	}
	s.Resume(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Errorf("SET after Resume: %v", err)
	}
}

func TestCluster(t *testing.T) {
	cl := NewCluster(t)
	c := cl.Client(t)
	ctx := context.Background()
	// Keys in different slots land on different masters.
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	var masters atomic.Int64 // ForEachMaster calls fn concurrently
	if err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		if n.DBSize(ctx).Val() > 0 {
			masters.Add(1)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if masters.Load() < 2 {
		t.Errorf("keys spread over %d masters, want >= 2", masters.Load())
	}
}

func TestClusterKillMaster(t *testing.T) {
	cl := NewClusterWithReplicas(t)
	ctx := context.Background()
	m, err := cl.Client(t).MasterForKey(ctx, "k")
	if err != nil {
		t.Fatalf("MasterForKey: %v", err)
	}
	old := m.Options().Addr
	promoted := cl.KillMaster(t, old)
	if promoted == old {
		t.Fatalf("KillMaster(%s) = the killed master", old)
	}
	// The promoted replica owns k's slot now: it takes the write itself
	// instead of answering MOVED.
	c := redis.NewClient(&redis.Options{Addr: promoted})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Errorf("SET k on the promoted %s: %v", promoted, err)
	}
}
