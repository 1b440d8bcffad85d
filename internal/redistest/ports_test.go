package redistest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// holdPort listens on a free loopback port until the test ends, so a
// redis-server told to use it fails with "Address already in use", as when
// another test package takes a port between freePort and the bind.
func holdPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// takenAt is a portSource that hands out port at its call number at
// (counting from 1) and free ports otherwise. It counts its calls.
type takenAt struct {
	port, at int
	calls    int
}

func (p *takenAt) pick() (int, error) {
	p.calls++
	if p.calls == p.at {
		return p.port, nil
	}
	return freePort()
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("SplitHostPort(%q): %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("port of %q: %v", addr, err)
	}
	return n
}

func TestStartRetriesTakenPort(t *testing.T) {
	taken := holdPort(t)
	src := &takenAt{port: taken, at: 1}
	s := startReal(t, src.pick, false)
	if got := portOf(t, s.Addr); got == taken {
		t.Errorf("server on the taken port %d", got)
	}
	if src.calls != 2 {
		t.Errorf("ports picked = %d, want 2 (one taken, one that works)", src.calls)
	}
	if err := s.Client(t).Ping(context.Background()).Err(); err != nil {
		t.Errorf("PING: %v", err)
	}
}

// Another redis-server on the picked port answers PING before our own
// process fails its bind; start must not take it for ours.
func TestStartIgnoresAnotherServerOnItsPort(t *testing.T) {
	other := Real(t)
	src := &takenAt{port: portOf(t, other.Addr), at: 1}
	s := startReal(t, src.pick, false)
	if s.Addr == other.Addr {
		t.Fatalf("started on %s, which another server holds", s.Addr)
	}
	ctx := context.Background()
	if err := s.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if n := other.Client(t).Exists(ctx, "k").Val(); n != 0 {
		t.Errorf("EXISTS k on the other server = %d, want 0", n)
	}
}

func TestStartGivesUpAfterAttempts(t *testing.T) {
	taken := holdPort(t)
	src := &takenAt{port: taken, at: 1}
	always := func() (int, error) { return src.port, nil }
	s := &Server{Real: true, bin: serverBinary(t), dir: t.TempDir()}
	err := s.startFresh(always, false)
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("startFresh on a taken port = %v, want errPortTaken", err)
	}
	if want := "port " + strconv.Itoa(taken); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
}

// The second port picked is the first node's cluster bus port; holding it
// makes that node's first start fail after its main port bound.
func TestClusterRetriesTakenBusPort(t *testing.T) {
	taken := holdPort(t)
	src := &takenAt{port: taken, at: 2}
	cl := newCluster(t, src.pick, 0, 5000)
	// Three nodes need six ports; the failed start two more.
	if src.calls < 8 {
		t.Errorf("ports picked = %d, want >= 8 (a retry after the taken bus port)", src.calls)
	}
	for _, n := range cl.nodes {
		if portOf(t, n.Addr) == taken || n.bus == taken {
			t.Errorf("node %s (bus %d) uses the taken port %d", n.Addr, n.bus, taken)
		}
	}
	if err := cl.Client(t).Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Errorf("SET on the cluster: %v", err)
	}
}

func TestSentinelRetriesTakenPort(t *testing.T) {
	taken := holdPort(t)
	src := &takenAt{port: taken, at: 1}
	master := Real(t)
	sn := newSentinel(t, src.pick, master, nil, "")
	if got := portOf(t, sn.Addr); got == taken {
		t.Errorf("sentinel on the taken port %d", got)
	}
	if src.calls != 2 {
		t.Errorf("ports picked = %d, want 2 (one taken, one that works)", src.calls)
	}
	if got := sn.MasterAddr(t); got != master.Addr {
		t.Errorf("MasterAddr() = %s, want %s", got, master.Addr)
	}
}

// stopAndHold stops s and listens on its address, as another process could
// between Restart's stop and start.
func stopAndHold(t *testing.T, s *Server) net.Listener {
	t.Helper()
	s.stop()
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		t.Fatalf("listen on the stopped server's %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestRestartWaitsForItsPort(t *testing.T) {
	s := Real(t)
	addr := s.Addr
	l := stopAndHold(t, s)
	var waits int
	// Let go of the port at the first wait, as a short-lived holder would.
	release := func(int) { waits++; _ = l.Close() }
	if err := s.startSamePort(release); err != nil {
		t.Fatalf("startSamePort: %v", err)
	}
	if waits != 1 {
		t.Errorf("waits = %d, want 1", waits)
	}
	if s.Addr != addr {
		t.Errorf("Addr after restart = %s, want %s", s.Addr, addr)
	}
	if err := s.Client(t).Ping(context.Background()).Err(); err != nil {
		t.Errorf("PING after restart: %v", err)
	}
}

func TestRestartNamesItsTakenPort(t *testing.T) {
	s := Real(t)
	stopAndHold(t, s)
	var waits int
	err := s.startSamePort(func(int) { waits++ })
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("startSamePort on a held port = %v, want errPortTaken", err)
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	if want := "port " + port + " still taken"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if waits != restartAttempts-1 {
		t.Errorf("waits = %d, want %d", waits, restartAttempts-1)
	}
}
