package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections from 127.0.0.1 to one target and injects the
// faults it is told to. It's safe for concurrent use by multiple goroutines.
// The test that starts it closes it.
type Proxy struct {
	target string
	ln     net.Listener

	refuse    atomic.Bool
	blackhole atomic.Bool
	reqDelay  atomic.Int64 // time.Duration applied to client->server chunks
	repDelay  atomic.Int64 // time.Duration applied to server->client chunks
	// oneShot is 0 when no one-shot fault is armed; otherwise the next chunk
	// from the server forwards its first oneShot-1 bytes and then resets its
	// connection. DropNextReply arms it with 1, ResetMidReply(n) with n+1:
	// both are "cut the reply after n bytes", a dropped reply being n = 0.
	oneShot  atomic.Int64
	accepted atomic.Int64

	holdMu sync.Mutex      // guards hold and holds
	hold   chan struct{}   // non-nil while new requests are held; closed to release them
	holds  []chan struct{} // every hold not yet released
	nHeld  atomic.Int64    // chunks read while holding and not yet forwarded

	// wg counts the accept loop and every connection goroutine. Add runs under
	// mu after checking closed, or from a goroutine wg already counts, so no
	// Add races with the Wait in Close.
	wg sync.WaitGroup

	mu     sync.Mutex // guards links and closed
	links  map[*link]struct{}
	closed bool
}

// Start listens on 127.0.0.1:0 and forwards each accepted connection to
// target, a host:port on loopback, dialled anew for each connection. It starts
// with no fault. If the target cannot be dialled, the client's connection is
// reset. The caller must call [Proxy.Close].
func Start(target string) (*Proxy, error) {
	if err := checkLoopback(target); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// checkLoopback keeps the proxy from ever reaching past this machine: the
// target must be a loopback IP literal or "localhost".
func checkLoopback(target string) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("faultproxy target %q: %w", target, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("faultproxy target %q: not a loopback address", target)
	}
	return nil
}

// Addr returns the address clients dial, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy: it closes the listener, closes every connection on
// both sides (a plain close: a peer reads EOF, or a reset if it had sent bytes
// the proxy had not yet read), throws away bytes still held by a delay, and
// waits for every goroutine the proxy started. It does not
// wait for delays to expire. Close is idempotent; later calls return nil.
// Dialling [Proxy.Addr] afterwards fails.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	links := p.snapshotLocked()
	p.mu.Unlock()

	err := p.ln.Close()
	for _, l := range links {
		l.close(false)
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy close: %w", err)
	}
	return nil
}

// Pass goes back to normal forwarding: it turns off Refuse and Blackhole,
// sets both delays to zero and releases held requests. An armed one-shot fault ([Proxy.DropNextReply],
// [Proxy.ResetMidReply]) stays armed.
func (p *Proxy) Pass() {
	p.refuse.Store(false)
	p.blackhole.Store(false)
	p.reqDelay.Store(0)
	p.repDelay.Store(0)
	p.ReleaseRequests()
}

// Refuse, while on, resets each new connection (SO_LINGER 0, so the client
// sees RST) right after accept; the client's dial may still succeed, since the
// kernel completes the handshake, but its first read or write fails. Open
// connections are unaffected. Refused connections count in [Proxy.Accepted].
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// Blackhole, while on, makes the proxy accept and never answer: bytes read in
// either direction, on open and new connections, are thrown away, and so are
// bytes a delay still holds when they come due. Turning it off forwards new
// bytes again; the discarded ones are gone. A chunk that already carries a
// one-shot fault still resets its connection.
func (p *Proxy) Blackhole(on bool) { p.blackhole.Store(on) }

// DelayRequests holds each chunk from client to server for d after it arrives
// before forwarding it. The delay is read when a chunk arrives, so a change
// affects bytes arriving afterwards. Order is kept per connection: a chunk is
// never forwarded before an earlier one. Zero (the default) or less means no
// delay.
func (p *Proxy) DelayRequests(d time.Duration) { p.reqDelay.Store(int64(max(d, 0))) }

// HoldRequests holds every chunk from client to server that arrives from now
// on, on open and new connections, until [Proxy.ReleaseRequests]: a request
// caught in the network for as long as the test wants, without a timer.
// [Proxy.StopHolding] lets later chunks through while the held ones stay
// held. The client may give up and close its connection meanwhile; what was
// held is still delivered on release, as a slow network would deliver it. A
// second call while holding does nothing.
func (p *Proxy) HoldRequests() {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	if p.hold == nil {
		p.hold = make(chan struct{})
		p.holds = append(p.holds, p.hold)
	}
}

// StopHolding lets chunks that arrive from now on through at once; those
// held already stay held until [Proxy.ReleaseRequests].
func (p *Proxy) StopHolding() {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	p.hold = nil
}

// ReleaseRequests stops holding and lets every held chunk go, in order per
// connection. It returns before they are written; a test that must know
// when the server ran them watches the server (INFO commandstats, say).
func (p *Proxy) ReleaseRequests() {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	for _, h := range p.holds {
		close(h)
	}
	p.hold, p.holds = nil, nil
}

// Held returns how many chunks the proxy has read while holding and not yet
// forwarded, so a test can wait until a request is caught.
func (p *Proxy) Held() int { return int(p.nHeld.Load()) }

// held returns the channel whose closing releases a chunk arriving now, or
// nil when requests are not held.
func (p *Proxy) held() chan struct{} {
	p.holdMu.Lock()
	defer p.holdMu.Unlock()
	return p.hold
}

// DelayReplies is [Proxy.DelayRequests] for bytes from server to client.
func (p *Proxy) DelayReplies(d time.Duration) { p.repDelay.Store(int64(max(d, 0))) }

// ResetAll resets every open connection on both sides (SO_LINGER 0, so each
// peer sees RST) and throws away bytes held by a delay. It returns how many
// client connections it reset. [Proxy.Conns] no longer counts them when it
// returns. The proxy keeps accepting.
func (p *Proxy) ResetAll() int {
	p.mu.Lock()
	links := p.snapshotLocked()
	p.mu.Unlock()
	n := 0
	for _, l := range links {
		if l.close(true) {
			n++
		}
	}
	return n
}

// DropNextReply arms a one-shot fault: the next chunk read from the server, on
// any connection, is not forwarded, and that connection is reset on both sides
// instead. The server ran the command; the client never sees the reply, as
// when a reply is lost. It replaces a fault armed by [Proxy.ResetMidReply].
func (p *Proxy) DropNextReply() { p.oneShot.Store(1) }

// ResetMidReply arms a one-shot fault: only the first n bytes of the next
// chunk read from the server, on any connection, are forwarded, and then that
// connection is reset on both sides, as when a reply is cut in the middle. A
// chunk of n bytes or fewer is forwarded whole before the reset; n <= 0 is
// [Proxy.DropNextReply], which it replaces if armed.
func (p *Proxy) ResetMidReply(n int) { p.oneShot.Store(int64(max(n, 0)) + 1) }

// takeOneShot disarms the one-shot fault and returns how many bytes of the
// current chunk to forward before the reset, or -1 when none was armed.
func (p *Proxy) takeOneShot() int {
	if p.oneShot.Load() == 0 { // the common case: no write to a shared word
		return -1
	}
	return int(p.oneShot.Swap(0)) - 1
}

// Conns returns how many client connections are open, counting those whose
// dial to the target is still under way.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Accepted returns how many client connections the proxy has accepted since
// Start, refused ones included.
func (p *Proxy) Accepted() int { return int(p.accepted.Load()) }

// serve accepts until the listener is closed. Any accept error ends it; new
// dials then fail, which a test notices.
func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		client := c.(*net.TCPConn)
		if p.refuse.Load() {
			reset(client)
			continue
		}
		l := newLink(p, client)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = client.Close()
			return
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go l.run()
	}
}

func (p *Proxy) snapshotLocked() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

func (p *Proxy) remove(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// reset closes c so that the peer sees RST rather than FIN.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
