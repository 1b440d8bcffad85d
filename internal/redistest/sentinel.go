package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the sentinel of [NewSentinel] monitors.
const SentinelMaster = "tiercache"

// Sentinel is a real redis-server master watched by one Redis Sentinel,
// both processes this test started on loopback ports, and optionally a
// replica the sentinel promotes when the master dies.
type Sentinel struct {
	// Master is the monitored server.
	Master *Server
	// Replica replicates Master; nil unless made by NewSentinelWithReplica.
	Replica *Server
	// Addr is the sentinel's host:port.
	Addr string
}

// NewSentinelWithReplica is NewSentinel plus a replica of the master, and a
// sentinel that declares the master down after 500ms without answers, so
// killing the master (Master.Kill) promotes the replica within seconds.
func NewSentinelWithReplica(tb testing.TB) *Sentinel {
	tb.Helper()
	// No diskless sync delay: the replica is in sync within milliseconds,
	// not the default 5s, so a graceful failover (Failover) can start.
	master := RealWith(tb, "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := startReal(tb, freePort, false, "--replicaof", host, port)
	return newSentinel(tb, freePort, master, replica,
		"sentinel down-after-milliseconds "+SentinelMaster+" 500\n"+
			"sentinel failover-timeout "+SentinelMaster+" 2000\n")
}

// NewSentinel starts a master and a sentinel that monitors it (quorum 1),
// and waits until the sentinel names the master. It skips, or fails when
// TIERCACHE_REQUIRE_REDIS=1, without redis-server.
func NewSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	return newSentinel(tb, freePort, Real(tb), nil, "")
}

// newSentinel starts a sentinel for master on a port from pick.
func newSentinel(tb testing.TB, pick portSource, master, replica *Server, extraConf string) *Sentinel {
	tb.Helper()
	_, mport, _ := net.SplitHostPort(master.Addr)
	dir := tb.TempDir()
	// A sentinel rewrites its config file, so it gets one of its own. One
	// that fails to bind exits before it rewrites anything, so a retry can
	// reuse the file.
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 1\n", SentinelMaster, mport) + extraConf
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatalf("write sentinel config: %v", err)
	}
	sn := &Server{Real: true, bin: master.bin, dir: dir, sentinel: conf}
	if err := sn.startFresh(pick, false); err != nil {
		tb.Fatalf("redistest: start sentinel: %v", err)
	}
	tb.Cleanup(sn.stop)
	addr := sn.Addr

	sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
	defer sc.Close()
	// The sentinel answers once it has loaded its config; nothing signals
	// that, so poll with a deadline.
	deadline := time.Now().Add(startTimeout)
	for {
		got, err := sc.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
		if err == nil && len(got) == 2 && got[1] == mport {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sentinel on %s does not name the master after %v: %v %v", addr, startTimeout, got, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	return &Sentinel{Master: master, Replica: replica, Addr: addr}
}

// MasterAddr asks the sentinel which server is the master now.
func (s *Sentinel) MasterAddr(tb testing.TB) string {
	tb.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	got, err := sc.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
	if err != nil || len(got) != 2 {
		tb.Fatalf("SENTINEL get-master-addr-by-name: %v %v", got, err)
	}
	return net.JoinHostPort(got[0], got[1])
}

// Client returns a Sentinel-backed (failover) client, closed when the test
// ends.
func (s *Sentinel) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    SentinelMaster,
		SentinelAddrs: []string{s.Addr},
		DialTimeout:   time.Second,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Failover has the sentinel promote the replica while the master keeps
// running (SENTINEL FAILOVER): the old master becomes a replica of the new
// one, as after a failover it took part in. It waits until the sentinel
// names the replica and both servers report their new roles. The Sentinel
// must come from NewSentinelWithReplica.
func (s *Sentinel) Failover(tb testing.TB) {
	tb.Helper()
	if s.Replica == nil {
		tb.Fatal("redistest: Failover needs NewSentinelWithReplica")
	}
	ctx := context.Background()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	master := redis.NewClient(&redis.Options{Addr: s.Master.Addr, MaxRetries: -1})
	defer master.Close()
	replica := redis.NewClient(&redis.Options{Addr: s.Replica.Addr, MaxRetries: -1})
	defer replica.Close()
	role := func(c *redis.Client) string {
		r, err := c.Do(ctx, "ROLE").Slice()
		if err != nil || len(r) == 0 {
			return fmt.Sprint(err)
		}
		return fmt.Sprint(r[0])
	}
	// The sentinel refuses to fail over until it has seen the replica in
	// sync; nothing announces that, so poll with a deadline.
	deadline := time.Now().Add(startTimeout)
	for {
		err := sc.Failover(ctx, SentinelMaster).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	// The sentinel demotes a running old master only once it has seen it
	// claim the master role for a while (about 8s); do at once what it
	// will do then.
	deadline = time.Now().Add(startTimeout)
	for s.MasterAddr(tb) != s.Replica.Addr {
		if time.Now().After(deadline) {
			tb.Fatalf("sentinel names %s, not the replica, %v after SENTINEL FAILOVER", s.MasterAddr(tb), startTimeout)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	host, port, _ := net.SplitHostPort(s.Replica.Addr)
	if err := master.ReplicaOf(ctx, host, port).Err(); err != nil {
		tb.Fatalf("REPLICAOF on the old master: %v", err)
	}
	deadline = time.Now().Add(startTimeout)
	for s.MasterAddr(tb) != s.Replica.Addr || role(replica) != "master" || role(master) != "slave" {
		if time.Now().After(deadline) {
			tb.Fatalf("failover not done after %v: sentinel names %s; roles: old master %s, replica %s",
				startTimeout, s.MasterAddr(tb), role(master), role(replica))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
