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

	mini  *miniredis.Miniredis
	bin   string
	dir   string
	extra []string // more redis-server arguments

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
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("redis-server not found on PATH and %s=1: %v", RequireEnv, err)
		}
		tb.Skipf("redis-server not on PATH (set %s=1 to make this a failure)", RequireEnv)
	}
	s := &Server{Real: true, bin: bin, dir: tb.TempDir()}
	// A free port can be taken between our probe and the server's bind;
	// retry a few times with a new port.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("find free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		tb.Fatalf("start redis-server: %v", lastErr)
	}
	tb.Cleanup(s.stop)
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start launches the process on s.Addr and waits until it answers PING.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin,
		"--port", port,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", s.dir,
		"--logfile", "",
		"--loglevel", "warning",
	)
	cmd.Args = append(cmd.Args, s.extra...)
	dieWithParent(cmd)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	// No readiness signal exists short of the server answering, so poll PING
	// with a deadline.
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited: %v: %s", err, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s not ready after %v: %v", s.Addr, startTimeout, err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not synchronization
	}
	s.mu.Lock()
	s.proc, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
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
// breaks, including pub/sub subscriptions.
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
	if err := s.start(); err != nil {
		tb.Fatalf("restart redis-server: %v", err)
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
