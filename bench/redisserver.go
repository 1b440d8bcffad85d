package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoRedisServer is returned by [StartRedis] when no redis-server binary
// is on PATH.
var ErrNoRedisServer = errors.New("bench: redis-server not found on PATH (install it, e.g. apt-get install redis-server, or pass -redis host:port)")

// Server is a redis-server child process on a loopback port. Close kills it
// by PID and waits for it.
type Server struct {
	// Addr is the server's 127.0.0.1:port.
	Addr string
	cmd  *exec.Cmd
}

// startTimeout bounds how long StartRedis waits for the child to answer PING.
const startTimeout = 5 * time.Second

// StartRedis starts redis-server on a free 127.0.0.1 port with persistence
// off and waits until it answers PING. The caller must call Close.
func StartRedis(ctx context.Context) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// No CommandContext: the child is killed by Close, by PID, and only there.
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &Server{Addr: addr, cmd: cmd}
	if err := waitPing(ctx, addr); err != nil {
		s.Close()
		return nil, fmt.Errorf("redis-server on %s: %w", addr, err)
	}
	return s, nil
}

// Close kills the child by its PID and reaps it. It is safe to call twice.
func (s *Server) Close() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before redis-server binds it; StartRedis then fails its PING wait.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPing polls with a deadline because redis-server gives no readiness
// signal other than answering.
func waitPing(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	var err error
	for i := 0; i < 500; i++ {
		if err = rdb.Ping(ctx).Err(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no PING answer within %v: %w", startTimeout, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("no PING answer: %w", err)
}
