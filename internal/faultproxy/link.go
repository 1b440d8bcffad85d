package faultproxy

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// chunkSize is the most one read takes from a socket.
	chunkSize = 32 << 10
	// queueLen is how many chunks a direction holds while they wait out a
	// delay: at most 64 × 32 KiB = 2 MiB per direction. The reader must keep
	// reading while the writer waits, or chunks would be stamped when the
	// writer frees up rather than when they arrive. Past queueLen the reader
	// blocks, TCP pushes back on the sender, and later chunks wait longer
	// than the delay, as on a slow link; tests send far less.
	queueLen = 64
	// dialTimeout bounds the dial to the target, which is on loopback and
	// answers at once unless it is gone.
	dialTimeout = 5 * time.Second
)

// chunk is one read from a socket on its way to the other side.
type chunk struct {
	data []byte
	due  time.Time     // when to forward it; zero means at once
	hold chan struct{} // if set, forward it only once this is closed (HoldRequests)
	cut  int           // -1: forward it all; else forward data[:cut], then reset the link
}

// link is one client connection and its connection to the target. Its
// goroutines are counted in the proxy's WaitGroup.
type link struct {
	p      *Proxy
	client *net.TCPConn
	ctx    context.Context // done once the link is closed; stops the dial and delayed writes
	cancel context.CancelFunc

	mu     sync.Mutex // guards server and closed
	server *net.TCPConn
	closed bool
}

func newLink(p *Proxy, client *net.TCPConn) *link {
	ctx, cancel := context.WithCancel(context.Background())
	return &link{p: p, client: client, ctx: ctx, cancel: cancel}
}

// run dials the target and forwards both ways until the link is closed. It
// starts three goroutines and is the fourth: the writer to the client.
func (l *link) run() {
	defer l.p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(l.ctx, "tcp", l.p.target)
	if err != nil {
		l.close(true)
		return
	}
	server := c.(*net.TCPConn)
	if !l.attach(server) {
		return
	}
	requests := make(chan chunk, queueLen)
	replies := make(chan chunk, queueLen)
	l.p.wg.Add(3) // run is counted, so this Add cannot race with Close's Wait
	go func() {
		defer l.p.wg.Done()
		l.read(l.client, requests, &l.p.reqDelay, false)
	}()
	go func() {
		defer l.p.wg.Done()
		l.write(server, requests)
	}()
	go func() {
		defer l.p.wg.Done()
		l.read(server, replies, &l.p.repDelay, true)
	}()
	l.write(l.client, replies)
}

// attach records the server side, or closes it if the link was closed while
// the dial was under way. It reports whether the link goes on.
func (l *link) attach(server *net.TCPConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = server.Close()
		return false
	}
	l.server = server
	return true
}

// close closes both sides, with RST when hard is set, stops writers waiting
// out a delay, and removes the link from the proxy. It reports whether this
// call was the one that closed it.
func (l *link) close(hard bool) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	server := l.server
	l.mu.Unlock()

	l.cancel()
	for _, c := range []*net.TCPConn{l.client, server} {
		switch {
		case c == nil: // closed before the dial finished
		case hard:
			reset(c)
		default:
			_ = c.Close()
		}
	}
	l.p.remove(l)
	return true
}

// read reads src into ch until src fails or closes, then closes ch, which
// tells the writer to deliver what it holds and close the link. Each chunk
// takes the delay in force when it arrives; a chunk from the server takes the
// one-shot fault, if one is armed.
func (l *link) read(src *net.TCPConn, ch chan<- chunk, delay *atomic.Int64, fromServer bool) {
	defer close(ch)
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.p.blackhole.Load() {
			c := chunk{data: bytes.Clone(buf[:n]), cut: -1}
			if d := time.Duration(delay.Load()); d > 0 {
				c.due = time.Now().Add(d)
			}
			if fromServer {
				c.cut = l.p.takeOneShot()
			} else {
				if c.hold = l.p.held(); c.hold != nil {
					l.p.nHeld.Add(1)
				}
			}
			select {
			case ch <- c:
			case <-l.ctx.Done():
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// write forwards each chunk from ch to dst no earlier than it is due, in
// order. After dst fails or the link is closed it only drains ch, so the
// reader never blocks. When ch is closed the reader's side has ended, and
// write closes the link: what was queued has been delivered, as a slow
// network would deliver it.
func (l *link) write(dst *net.TCPConn, ch <-chan chunk) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	done := false // dst failed or the link is closed: discard the rest
	for c := range ch {
		if done {
			continue
		}
		if c.hold != nil {
			select {
			case <-c.hold:
			case <-l.ctx.Done():
			}
			l.p.nHeld.Add(-1)
		}
		if !c.due.IsZero() {
			if wait := time.Until(c.due); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait) // since Go 1.23, Reset leaves no stale tick
				}
				select {
				case <-timer.C:
				case <-l.ctx.Done():
				}
			}
		}
		if l.ctx.Err() != nil {
			done = true
			continue
		}
		data := c.data
		if c.cut >= 0 {
			data = data[:min(c.cut, len(data))]
		}
		var err error
		if len(data) > 0 && !l.p.blackhole.Load() {
			_, err = dst.Write(data)
		}
		if c.cut >= 0 {
			l.close(true)
		}
		done = err != nil || c.cut >= 0
	}
	l.close(false)
}
