// Package redistest gives tests a Redis to talk to: a real redis-server on a
// free loopback port when the binary is on PATH, and miniredis otherwise.
//
// Tests normally call [Run], which runs the same function once on miniredis
// and once on a real server. A missing redis-server skips the real run, unless
// TIERCACHE_REQUIRE_REDIS=1 is set (as CI does), in which case it fails the
// test. Fault helpers ([Server.Restart], [Server.KillPubSubClients],
// [Server.Pause], [Server.Resume]) need the real server; tests that use them call [Real].
//
// Every server is stopped and reaped in t.Cleanup. Nothing here talks to any
// address other than 127.0.0.1.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// RequireEnv is the environment variable that turns a missing redis-server
// binary from a skip into a test failure.
const RequireEnv = "TIERCACHE_REQUIRE_REDIS"

// startTimeout bounds how long a real server may take to accept PING.
const startTimeout = 10 * time.Second

// Server is one Redis for one test. It is safe for concurrent use, though
// Restart must not run concurrently with itself.
type Server struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// Real reports whether this is a redis-server process rather than miniredis.
	Real bool
	// TLSAddr is host:port of the TLS listener of a server from [RealTLS],
	// empty otherwise.
	TLSAddr string

	mini     *miniredis.Miniredis
	bin      string
	dir      string
	sentinel string    // a sentinel's config file; empty for a plain server
	bus      int       // cluster bus port (--cluster-port); 0 outside a cluster
	extra    []string  // more redis-server arguments
	tls      *tlsFiles // certificate and key of a RealTLS server; nil for others

	mu     sync.Mutex // guards proc and exited
	proc   *exec.Cmd
	exited chan error // receives the process's exit once
}

// Run runs fn as two subtests, "miniredis" and "redis-server", each with its
// own fresh server.
func Run(t *testing.T, fn func(t *testing.T, s *Server)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) { fn(t, Mini(t)) })
	t.Run("redis-server", func(t *testing.T) { fn(t, Real(t)) })
}

// Mini starts a miniredis server that is closed when the test ends.
func Mini(tb testing.TB) *Server {
	tb.Helper()
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		tb.Fatalf("start miniredis: %v", err)
	}
	tb.Cleanup(m.Close)
	return &Server{Addr: m.Addr(), mini: m}
}

// Real starts a redis-server process on a free loopback port, killed and
// reaped when the test ends. Without the binary it skips the test, or fails
// it when TIERCACHE_REQUIRE_REDIS=1.
func Real(tb testing.TB) *Server {
	tb.Helper()
	return startReal(tb, freePort, false)
}

// RealWith is [Real] with more redis-server arguments ("--replicaof",
// host, port; "--maxmemory", "1mb"). They are kept across Restart.
func RealWith(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return startReal(tb, freePort, false, args...)
}

// startReal starts a redis-server with extra arguments on ports from pick,
// a cluster bus port too if clusterNode, and registers its cleanup.
func startReal(tb testing.TB, pick portSource, clusterNode bool, extra ...string) *Server {
	tb.Helper()
	s := &Server{Real: true, bin: serverBinary(tb), dir: tb.TempDir(), extra: extra}
	if err := s.startFresh(pick, clusterNode); err != nil {
		what := "redis-server"
		if len(extra) > 0 {
			what += fmt.Sprintf(" %q", extra)
		}
		tb.Fatalf("redistest: start %s: %v", what, err)
	}
	tb.Cleanup(s.stop)
	return s
}

// serverBinary finds redis-server on PATH, or skips the test, or fails it
// when TIERCACHE_REQUIRE_REDIS=1.
func serverBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("redis-server not found on PATH and %s=1: %v", RequireEnv, err)
		}
		tb.Skipf("redis-server not on PATH (set %s=1 to make this a failure)", RequireEnv)
	}
	return bin
}

// start launches the process on s's ports and waits until it answers. It
// returns an error wrapping errPortTaken when the server could not bind.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	var args []string
	if s.sentinel != "" {
		// redis-server reads a config file only as its first argument.
		args = append(args, s.sentinel, "--sentinel")
	}
	args = append(args,
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", s.dir,
		"--logfile", "",
		"--loglevel", "warning",
	)
	if s.bus != 0 {
		args = append(args, "--cluster-port", strconv.Itoa(s.bus))
	}
	if s.tls != nil {
		_, tport, _ := net.SplitHostPort(s.TLSAddr)
		args = append(args, "--tls-port", tport, "--tls-cert-file", s.tls.cert, "--tls-key-file", s.tls.key,
			"--tls-ca-cert-file", s.tls.ca, "--tls-auth-clients", "no")
	}
	cmd := exec.Command(s.bin, append(args, s.extra...)...)
	dieWithParent(cmd)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Short timeouts: a port held by something other than Redis may accept
	// the connection and never answer.
	c := redis.NewClient(&redis.Options{
		Addr:         s.Addr,
		MaxRetries:   -1,
		DialTimeout:  200 * time.Millisecond,
		ReadTimeout:  200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond,
	})
	defer c.Close()
	// No readiness signal exists short of the server answering, so poll with
	// a deadline.
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			// out is complete: Wait returns after copying all output.
			if strings.Contains(out.String(), "Address already in use") {
				return fmt.Errorf("redis-server on %s exited: %v: %w: %s", s.ports(), err, errPortTaken, out.String())
			}
			return fmt.Errorf("redis-server on %s exited: %v: %s", s.ports(), err, out.String())
		default:
		}
		err := answersAs(c, s.Addr, cmd.Process.Pid)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s not ready after %v: %v", s.ports(), startTimeout, err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not synchronization
	}
	s.mu.Lock()
	s.proc, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// answersAs returns nil once the server at addr, reached through c, answers
// as process pid. PING alone is not enough: when another test's server holds
// our port, it answers while ours is still starting up to fail its bind, and
// the test would run against someone else's data.
func answersAs(c *redis.Client, addr string, pid int) error {
	// Until the server listens, probe with a bare dial: a go-redis pool whose
	// dials keep failing stops dialing and leaves a goroutine retrying once a
	// second, which would slow the start and outlive c.Close.
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	_ = conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if got, ok := strings.CutPrefix(line, "process_id:"); ok {
			if got != strconv.Itoa(pid) {
				return fmt.Errorf("process %s answers, not ours (%d)", got, pid)
			}
			return nil
		}
	}
	return fmt.Errorf("INFO server has no process_id")
}

// stop kills the process this Server started (by its PID) and reaps it.
func (s *Server) stop() {
	s.mu.Lock()
	cmd, exited := s.proc, s.exited
	s.proc = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Name is "miniredis" or "redis-server".
func (s *Server) Name() string {
	if s.Real {
		return "redis-server"
	}
	return "miniredis"
}

// Options returns client options for this server with short timeouts suited
// to tests.
func (s *Server) Options() *redis.Options {
	return &redis.Options{
		Addr:         s.Addr,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	}
}

// Client returns a new client for this server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.Options())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Mini returns the miniredis behind s, or nil for a real server.
func (s *Server) Mini() *miniredis.Miniredis { return s.mini }

// Restart stops the server and starts it again on the same address. A real
// server comes back empty (it keeps nothing on disk); every client connection
// breaks, including pub/sub subscriptions. If another process takes the port
// while it is free, Restart tries again for about a second before it fails
// the test with an error naming the port.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if !s.Real {
		s.mini.Close()
		if err := s.mini.Restart(); err != nil {
			tb.Fatalf("restart miniredis: %v", err)
		}
		return
	}
	s.stop()
	if err := s.startSamePort(backoff); err != nil {
		tb.Fatalf("redistest: restart redis-server: %v", err)
	}
}

// KillPubSubClients disconnects every pub/sub client (CLIENT KILL TYPE
// pubsub) and returns how many were killed. It needs the real server.
func (s *Server) KillPubSubClients(tb testing.TB) int {
	tb.Helper()
	s.needReal(tb, "KillPubSubClients")
	c := s.admin()
	defer c.Close()
	n, err := c.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
	if err != nil {
		tb.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
	}
	return int(n)
}

// Kill stops the server for good (SIGKILL), as a crash would; cleanup has
// nothing left to do. It needs the real server.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.needReal(tb, "Kill")
	s.stop()
}

// Pause freezes the server process (SIGSTOP): connections stay open but
// nothing is answered and nothing is delivered, as with a server stuck in a
// long command or a stalled VM. It needs the real server. Call Resume to
// continue; a paused server is still killed at cleanup.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	s.signal(tb, "Pause", syscall.SIGSTOP)
}

// Resume continues a server frozen by Pause (SIGCONT).
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.signal(tb, "Resume", syscall.SIGCONT)
}

func (s *Server) signal(tb testing.TB, op string, sig syscall.Signal) {
	tb.Helper()
	s.needReal(tb, op)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		tb.Fatalf("redistest: %s: server not running", op)
	}
	if err := s.proc.Process.Signal(sig); err != nil {
		tb.Fatalf("redistest: %s: %v", op, err)
	}
}

func (s *Server) admin() *redis.Client {
	o := s.Options()
	o.PoolSize = 1
	return redis.NewClient(o)
}

func (s *Server) needReal(tb testing.TB, op string) {
	tb.Helper()
	if !s.Real {
		tb.Fatalf("redistest: %s needs a real redis-server; use redistest.Real", op)
	}
}
