package remote_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// startCluster starts a Redis Cluster of n masters on loopback (slots split
// evenly, no replicas) and returns a client for it. The processes are killed
// and reaped when the test ends. Like redistest.Real, it skips without
// redis-server unless TIERCACHE_REQUIRE_REDIS=1.
func startCluster(t *testing.T, n int) *redis.ClusterClient {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(redistest.RequireEnv) == "1" {
			t.Fatalf("redis-server not found: %v", err)
		}
		t.Skip("redis-server not on PATH")
	}
	ctx := context.Background()
	addrs := make([]string, n)
	busPorts := make([]int, n)
	for i := range n {
		port, busPort := freePort(t), freePort(t)
		dir := t.TempDir()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--cluster-port", strconv.Itoa(busPort),
			"--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "", "--loglevel", "warning")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		busPorts[i] = busPort
	}
	nodes := make([]*redis.Client, n)
	for i, addr := range addrs {
		nodes[i] = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		defer nodes[i].Close()
		// No readiness signal exists short of the server answering.
		waitFor(t, "PING "+addr, func() bool { return nodes[i].Ping(ctx).Err() == nil })
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := nodes[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", addr, err)
		}
	}
	for i, addr := range addrs[1:] {
		host, port, _ := net.SplitHostPort(addr)
		if err := nodes[0].Do(ctx, "CLUSTER", "MEET", host, port, busPorts[i+1]).Err(); err != nil {
			t.Fatalf("CLUSTER MEET %s: %v", addr, err)
		}
	}
	// Nodes agree through gossip, which has no completion signal.
	want := fmt.Sprintf("cluster_known_nodes:%d", n)
	for _, c := range nodes {
		waitFor(t, "cluster_state:ok", func() bool {
			info := c.ClusterInfo(ctx).Val()
			return strings.Contains(info, "cluster_state:ok") && strings.Contains(info, want)
		})
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = cc.Close() })
	waitFor(t, "cluster client routing", func() bool {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }) == nil &&
			cc.Set(ctx, "probe", 1, time.Second).Err() == nil
	})
	return cc
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 10ms for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func TestCluster(t *testing.T) {
	cc := startCluster(t, 3)
	st := newStore(t, cc, remote.Options{})
	ctx := context.Background()

	// Keys spread over many slots and all three nodes; two share a hash tag.
	keys := make([]string, 50)
	var sets []remote.SetOp
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
		if i%5 == 0 {
			keys[i] = fmt.Sprint("{tag}", i)
		}
		if i%2 == 0 {
			data, _ := st.Encode(keys[i], i, time.Minute)
			sets = append(sets, remote.SetOp{Key: keys[i], Data: data, TTL: time.Minute})
		}
	}
	sub := cc.Subscribe(ctx, "inval")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := st.Write(ctx, sets, []string{"k1", "k3"}, "inval", []byte("batch")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if msg, err := sub.ReceiveMessage(rctx); err != nil || msg.Payload != "batch" {
		t.Errorf("subscriber got %v, %v; want the message", msg, err)
	}

	before := st.Stats().RoundTrips
	items, ok, err := st.GetMany(ctx, keys)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if n := st.Stats().RoundTrips - before; n != 1 {
		t.Errorf("GetMany took %d round trips, want 1", n)
	}
	for i := range keys {
		var got int
		if ok[i] != (i%2 == 0) || ok[i] && (st.Decode(items[i], &got) != nil || got != i) {
			t.Errorf("GetMany: key %q = %d, %v; want present %v", keys[i], got, ok[i], i%2 == 0)
		}
	}

	leases, err := st.GetOrLeaseMany(ctx, keys[:10], leaseTTL)
	if err != nil {
		t.Fatalf("GetOrLeaseMany: %v", err)
	}
	var fills []remote.FillOp
	for i, l := range leases {
		if want := map[bool]remote.LeaseState{true: remote.LeaseHit, false: remote.LeaseGranted}[i%2 == 0]; l.State != want {
			t.Errorf("GetOrLeaseMany: %q is %v, want %v", keys[i], l.State, want)
		}
		if l.State == remote.LeaseGranted {
			data, _ := st.Encode(keys[i], -i, time.Minute)
			fills = append(fills, remote.FillOp{Key: keys[i], Token: l.Token, Data: data, TTL: time.Minute})
		}
	}
	installed, err := st.FillMany(ctx, fills)
	if err != nil || fmt.Sprint(installed) != "[true true true true true]" {
		t.Errorf("FillMany() = %v, %v; want all installed", installed, err)
	}
}
