// Package devredis starts the Redis that the examples and tierbench use when
// no address is given: a redis-server child on a free loopback port, or,
// when the binary is missing, an in-process miniredis.
//
// It is development scaffolding, not part of the pattern the examples show:
// a service in production is given its Redis address. It lives in the
// examples module, so the examples use the library's public API only, and
// tierbench imports it from here. Nothing here listens on or dials any
// address other than 127.0.0.1.
package devredis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// ErrNoRedisServer is returned by [Start] when no redis-server binary is on
// PATH and the caller did not allow the miniredis fallback.
var ErrNoRedisServer = errors.New("redis-server not found on PATH (install it, e.g. apt-get install redis-server, or pass a Redis address)")

// Kind says what is serving.
type Kind string

const (
	// RedisServer is a redis-server child process.
	RedisServer Kind = "redis-server"
	// Miniredis is an in-process miniredis: no client tracking, no
	// persistence, a Lua engine that is not Redis's own.
	Miniredis Kind = "miniredis"
)

// Server is one embedded Redis. Close stops it; it is safe to call twice.
type Server struct {
	// Addr is its 127.0.0.1:port.
	Addr string
	// Kind says whether it is a redis-server child or miniredis.
	Kind Kind

	mu   sync.Mutex
	cmd  *exec.Cmd
	reap chan struct{} // closed once cmd has been reaped
	mini *miniredis.Miniredis
}

// Options tune [Start].
type Options struct {
	// AllowMiniredis makes Start fall back to an in-process miniredis when
	// redis-server is not on PATH, instead of returning [ErrNoRedisServer].
	AllowMiniredis bool
	// StartTimeout bounds the wait for the child to answer PING.
	// Default: 5s.
	StartTimeout time.Duration
}

// startAttempts bounds how many fresh ports Start tries: a port found free
// can be taken by another process before redis-server binds it.
const startAttempts = 5

// Start starts a Redis on a free 127.0.0.1 port and waits until it answers
// PING. The caller must call Close.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.StartTimeout <= 0 {
		o.StartTimeout = 5 * time.Second
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if !o.AllowMiniredis {
			return nil, ErrNoRedisServer
		}
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("start miniredis: %w", err)
		}
		return &Server{Addr: m.Addr(), Kind: Miniredis, mini: m}, nil
	}
	for attempt := 1; ; attempt++ {
		s, err := startChild(ctx, bin, o.StartTimeout)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == startAttempts {
			return s, err
		}
	}
}

// errPortTaken marks a child that exited because its port was taken.
var errPortTaken = errors.New("port taken")

func startChild(ctx context.Context, bin string, timeout time.Duration) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var out bytes.Buffer
	// No CommandContext: the child is killed by Close, by PID, and only there.
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	s := &Server{Addr: addr, Kind: RedisServer, cmd: cmd, reap: exited}
	if err := waitPing(ctx, addr, timeout, exited); err != nil {
		s.kill(exited)
		if bytes.Contains(out.Bytes(), []byte("Address already in use")) {
			return nil, fmt.Errorf("redis-server on %s: %w", addr, errPortTaken)
		}
		return nil, fmt.Errorf("redis-server on %s: %w (exit: %v)", addr, err, waitErr)
	}
	return s, nil
}

// kill kills the child by its PID and waits for it to be reaped.
func (s *Server) kill(exited chan struct{}) {
	_ = s.cmd.Process.Kill()
	<-exited
}

// Close stops the server: it kills the child by PID and reaps it, or closes
// miniredis.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.kill(s.reap)
		s.cmd = nil
	}
	if s.mini != nil {
		s.mini.Close()
		s.mini = nil
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPing polls with a deadline because redis-server gives no readiness
// signal other than answering; it stops early if the child exits.
func waitPing(ctx context.Context, addr string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no PING answer within %v: %w", timeout, err)
		case <-exited:
			return errors.New("redis-server exited before answering PING")
		case <-tick.C:
		}
	}
}
