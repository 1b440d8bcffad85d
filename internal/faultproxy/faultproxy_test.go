package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/faultproxy"
	"github.com/tiercache/tiercache/internal/redistest"
)

// ioTimeout bounds every read and write a test makes, so a broken proxy fails
// the test instead of hanging it.
const ioTimeout = 10 * time.Second

// quiet is how long a read must see nothing to count as "never answered".
const quiet = 200 * time.Millisecond

// serve starts a TCP server on 127.0.0.1:0 that runs handle on each
// connection and closes it afterwards. Cleanup closes the listener and every
// connection and waits for the handlers.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

func start(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatalf("Start(%q): %v", target, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// dial connects to addr with every later read and write bounded by ioTimeout.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	return c
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// readFails reads from c and fails the test unless the read ends in an error
// other than a timeout: EOF, or a reset.
func readFails(t *testing.T, c net.Conn) {
	t.Helper()
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("read = %d bytes, nil error; want the connection broken", n)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read timed out; want the connection broken")
	}
}

// dialFails fails the test unless a connection to addr is reset: the kernel
// completes the handshake before the proxy accepts and resets, so the dial
// itself fails only if the reset comes back first; otherwise the first read
// fails.
func dialFails(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	readFails(t, c)
}

func TestPassThrough(t *testing.T) {
	p := start(t, serve(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "hello")
	// More than one chunk each way, to see that order holds across chunks.
	roundTrip(t, c, strings.Repeat("0123456789", 20_000))
	if got := p.Accepted(); got != 1 {
		t.Errorf("Accepted() = %d, want 1", got)
	}
	if got := p.Conns(); got != 1 {
		t.Errorf("Conns() = %d, want 1", got)
	}
}

func TestDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	tests := []struct {
		name string
		give func(p *faultproxy.Proxy, d time.Duration)
	}{
		{"requests", (*faultproxy.Proxy).DelayRequests},
		{"replies", (*faultproxy.Proxy).DelayReplies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, serve(t, echo))
			c := dial(t, p.Addr())
			roundTrip(t, c, "warm") // the dial to the target is not timed
			tt.give(p, delay)
			begin := time.Now()
			// Three writes, so three chunks are likely queued at once.
			for _, s := range []string{"a", "b", "c"} {
				if _, err := io.WriteString(c, s); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			got := make([]byte, 3)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read: %v", err)
			}
			if elapsed := time.Since(begin); elapsed < delay {
				t.Errorf("round trip took %v, want >= %v", elapsed, delay)
			}
			if string(got) != "abc" {
				t.Errorf("echo = %q, want %q", got, "abc")
			}
			p.Pass()
			roundTrip(t, c, "after pass")
		})
	}
}

// A side that closes while bytes are delayed still has them delivered, and
// only then is the other side closed, as on a slow network.
func TestDelayDeliversBeforeClose(t *testing.T) {
	const delay = 100 * time.Millisecond
	t.Run("replies", func(t *testing.T) {
		p := start(t, serve(t, func(c net.Conn) { _, _ = io.WriteString(c, "bye") }))
		p.DelayReplies(delay)
		begin := time.Now()
		c := dial(t, p.Addr())
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "bye" {
			t.Fatalf("ReadAll = %q, %v; want %q, nil", got, err, "bye")
		}
		if elapsed := time.Since(begin); elapsed < delay {
			t.Errorf("reply came after %v, want >= %v", elapsed, delay)
		}
	})
	t.Run("requests", func(t *testing.T) {
		received := make(chan string, 1) // one connection; never blocks the handler
		p := start(t, serve(t, func(c net.Conn) {
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			b, _ := io.ReadAll(c)
			received <- string(b)
		}))
		p.DelayRequests(delay)
		c := dial(t, p.Addr())
		if _, err := io.WriteString(c, "hi"); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = c.Close()
		if got := <-received; got != "hi" {
			t.Errorf("server received %q, want %q", got, "hi")
		}
	})
}

func TestBlackhole(t *testing.T) {
	p := start(t, serve(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "a")

	p.Blackhole(true)
	if _, err := io.WriteString(c, "b"); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read during blackhole = %d, %v; want a timeout", n, err)
	}
	nc := dial(t, p.Addr()) // new connections are accepted and not answered either
	if _, err := io.WriteString(nc, "x"); err != nil {
		t.Fatalf("write on new conn: %v", err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(quiet))
	if n, err := nc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on new conn during blackhole = %d, %v; want a timeout", n, err)
	}

	p.Pass()
	roundTrip(t, dial(t, p.Addr()), "new")
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, "c"); err != nil {
		t.Fatalf("write after pass: %v", err)
	}
	// Nothing tells the test when the proxy read "b", so in principle it may
	// read it only after Pass and forward it: accept "bc" as well as "c".
	var got []byte
	for !bytes.HasSuffix(got, []byte("c")) {
		b := make([]byte, 2)
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("read after pass: got %q, %v", got, err)
		}
		got = append(got, b[:n]...)
	}
	if string(got) != "c" && string(got) != "bc" {
		t.Errorf("echo after pass = %q, want %q", got, "c")
	}
}

func TestRefuse(t *testing.T) {
	p := start(t, serve(t, echo))
	open := dial(t, p.Addr())
	roundTrip(t, open, "before")

	p.Refuse(true)
	dialFails(t, p.Addr())
	roundTrip(t, open, "still open")

	p.Refuse(false)
	roundTrip(t, dial(t, p.Addr()), "after")
	if got := p.Accepted(); got != 3 {
		t.Errorf("Accepted() = %d, want 3", got)
	}
}

func TestResetAll(t *testing.T) {
	p := start(t, serve(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")

	// Hold the echo, so the read below is waiting on a reply in flight.
	p.DelayReplies(time.Hour)
	if _, err := io.WriteString(c, "x"); err != nil {
		t.Fatalf("write: %v", err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	if got := p.ResetAll(); got != 1 {
		t.Errorf("ResetAll() = %d, want 1", got)
	}
	if got := p.Conns(); got != 0 {
		t.Errorf("Conns() after ResetAll = %d, want 0", got)
	}
	err := <-readErr // bounded by the deadline dial set
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("in-flight read error = %v, want ECONNRESET", err)
	}

	p.Pass()
	roundTrip(t, dial(t, p.Addr()), "after")
}

func TestConnsDropsClosed(t *testing.T) {
	p := start(t, serve(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "x")
	if got := p.Conns(); got != 1 {
		t.Fatalf("Conns() = %d, want 1", got)
	}
	_ = c.Close()
	// The proxy learns of the close by reading EOF on its own goroutine,
	// which signals nothing a test can wait on, so poll with a deadline.
	deadline := time.Now().Add(ioTimeout)
	for p.Conns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Conns() = %d %v after the client closed, want 0", p.Conns(), ioTimeout)
		}
		time.Sleep(time.Millisecond) // poll interval, not synchronization
	}
}

func TestCloseDoesNotWaitForDelays(t *testing.T) {
	p, err := faultproxy.Start(serve(t, echo))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() }) // idempotent; stops the proxy if the test fails early
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")
	p.DelayReplies(time.Hour)
	if _, err := io.WriteString(c, "x"); err != nil {
		t.Fatalf("write: %v", err)
	}

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatalf("Close still running after %v", ioTimeout)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	// A plain close reads as EOF, or as a reset when "x" was still unread in
	// the proxy's socket; the delayed echo never arrives either way.
	if n, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after Close = %d bytes, %v; want EOF or ECONNRESET", n, err)
	}
	if got := p.Conns(); got != 0 {
		t.Errorf("Conns() after Close = %d, want 0", got)
	}
	if nc, err := net.DialTimeout("tcp", p.Addr(), ioTimeout); err == nil {
		_ = nc.Close()
		t.Errorf("dial after Close succeeded, want an error")
	}
}

func TestUnreachableTargetResets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := start(t, target)
	dialFails(t, p.Addr())
}

func TestStartRejects(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{"not loopback", "192.0.2.1:6379"},
		{"host name", "example.com:6379"},
		{"no port", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := faultproxy.Start(tt.give); err == nil {
				_ = p.Close()
				t.Errorf("Start(%q) = nil error, want one", tt.give)
			}
		})
	}
}

func TestDropNextReply(t *testing.T) {
	p := start(t, serve(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")
	p.DropNextReply()
	if _, err := io.WriteString(c, "lost"); err != nil {
		t.Fatalf("write: %v", err)
	}
	readFails(t, c)
	roundTrip(t, dial(t, p.Addr()), "one shot only")
}

func TestResetMidReply(t *testing.T) {
	const want = "0123456789"
	p := start(t, serve(t, echo))
	c := dial(t, p.Addr())
	roundTrip(t, c, "warm")
	p.ResetMidReply(3)
	if _, err := io.WriteString(c, want); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := io.ReadAll(c)
	// The echo's first chunk may be shorter than 3 bytes; either way no more
	// than 3 arrive, they are the reply's start, and the read ends in a reset.
	if err == nil || len(got) > 3 || !strings.HasPrefix(want, string(got)) {
		t.Errorf("ReadAll = %q, %v; want at most %q and an error", got, err, want[:3])
	}
	roundTrip(t, dial(t, p.Addr()), "one shot only")
}

// redisPair starts a real redis-server, a proxy in front of it, a client
// through the proxy with one connection (already dialled and handshaken, so
// a one-shot fault hits the next command rather than the handshake), and a
// direct client.
func redisPair(t *testing.T, maxRetries int) (p *faultproxy.Proxy, proxied, direct *redis.Client) {
	t.Helper()
	s := redistest.Real(t)
	p = start(t, s.Addr)
	o := s.Options()
	o.Addr = p.Addr()
	o.PoolSize = 1
	o.MaxRetries = maxRetries
	proxied = redis.NewClient(o)
	t.Cleanup(func() { _ = proxied.Close() })
	if err := proxied.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING through proxy: %v", err)
	}
	return p, proxied, s.Client(t)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	t.Cleanup(cancel)
	return ctx
}

// noRetries disables go-redis retries; zero would mean its default of 3.
const noRetries = -1

func TestRedisPassThrough(t *testing.T) {
	ctx := testContext(t)
	_, proxied, _ := redisPair(t, noRetries)
	if err := proxied.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := proxied.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k = %q, %v; want %q", got, err, "v")
	}
}

// A lost reply fails the command, though the server ran it.
func TestRedisDropNextReply(t *testing.T) {
	ctx := testContext(t)
	p, proxied, direct := redisPair(t, noRetries)
	p.DropNextReply()
	if err := proxied.Set(ctx, "k", "v", 0).Err(); err == nil {
		t.Fatalf("SET through proxy with a dropped reply = nil error, want one")
	}
	if got, err := direct.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("direct GET k = %q, %v; want %q: the SET ran", got, err, "v")
	}
}

// go-redis retries a command whose reply was lost, so a command that is not
// idempotent runs twice.
func TestRedisDropNextReplyRetried(t *testing.T) {
	ctx := testContext(t)
	p, proxied, direct := redisPair(t, 3)
	p.DropNextReply()
	if got, err := proxied.Incr(ctx, "n").Result(); err != nil || got != 2 {
		t.Errorf("INCR n after a dropped reply = %d, %v; want 2 (it ran twice)", got, err)
	}
	if got, err := direct.Get(ctx, "n").Result(); err != nil || got != "2" {
		t.Errorf("direct GET n = %q, %v; want %q", got, err, "2")
	}
}

func TestRedisResetMidReply(t *testing.T) {
	ctx := testContext(t)
	p, proxied, direct := redisPair(t, noRetries)
	want := strings.Repeat("x", 10<<10)
	if err := direct.Set(ctx, "big", want, 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	p.ResetMidReply(5)
	if got, err := proxied.Get(ctx, "big").Result(); err == nil {
		t.Fatalf("GET big cut after 5 bytes = %d bytes, nil error; want an error", len(got))
	}
	if got, err := proxied.Get(ctx, "big").Result(); err != nil || got != want {
		t.Errorf("GET big after the one-shot = %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
}

func TestRedisBlackhole(t *testing.T) {
	ctx := testContext(t)
	p, proxied, _ := redisPair(t, noRetries)
	p.Blackhole(true)
	err := proxied.Get(ctx, "k").Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("GET during blackhole = %v, want a timeout", err)
	}
	p.Pass()
	if err := proxied.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k after Pass = %v, want redis.Nil", err)
	}
}

// Held requests reach the server only when released, in order, and also
// when the client closed its side while they were held; StopHolding lets
// later requests through meanwhile.
func TestHoldRequests(t *testing.T) {
	got := make(chan string, 2)
	p := start(t, serve(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- string(b)
	}))
	c := dial(t, p.Addr())
	if _, err := io.WriteString(c, "warm"); err != nil {
		t.Fatal(err)
	}
	p.HoldRequests()
	p.HoldRequests() // a second call keeps holding
	if _, err := io.WriteString(c, "held"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(ioTimeout); p.Held() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("Held() stayed 0 after a write while holding")
		}
		time.Sleep(time.Millisecond) // poll: the proxy reads on its own goroutine
	}
	p.StopHolding()
	free := dial(t, p.Addr())
	if _, err := io.WriteString(free, "free"); err != nil {
		t.Fatal(err)
	}
	_ = free.Close()
	select {
	case s := <-got:
		if s != "free" {
			t.Fatalf("server read %q first, want %q: held bytes went through", s, "free")
		}
	case <-time.After(ioTimeout):
		t.Fatal("a request sent after StopHolding was held")
	}
	_ = c.Close() // the client gives up; the held bytes are still delivered
	select {
	case s := <-got:
		t.Fatalf("server read %q before the release", s)
	case <-time.After(50 * time.Millisecond): // an absence: a bounded wait is the only check
	}
	p.ReleaseRequests()
	select {
	case s := <-got:
		if s != "warmheld" {
			t.Errorf("server read %q, want %q", s, "warmheld")
		}
	case <-time.After(ioTimeout):
		t.Fatal("held bytes not delivered after ReleaseRequests")
	}
	if n := p.Held(); n != 0 {
		t.Errorf("Held() = %d after the release, want 0", n)
	}
	p.ReleaseRequests() // releasing again does nothing
}
