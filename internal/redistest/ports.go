package redistest

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// errPortTaken marks a start that failed because redis-server could not bind
// one of its ports ("Address already in use"): another process took the port
// after we saw it free. Only this failure is worth another attempt.
var errPortTaken = errors.New("port taken")

// portSource returns a loopback port that was free when it looked. Servers
// get theirs from freePort; tests pass one that hands out a taken port.
type portSource func() (int, error)

// freePort asks the kernel for a free loopback port. Nothing holds the port
// once it returns: until redis-server binds it, any process may take it
// (another test package's server, a client's ephemeral port), so every start
// retries on a bind failure.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAttempts bounds how many sets of fresh ports startFresh tries. Each
// failure needs another process to take our port in the milliseconds
// between freePort and the bind, so this many in a row means something
// else is wrong.
const startAttempts = 5

// startFresh picks ports for s from pick (a cluster bus port too, if
// clusterNode) and starts it. When the server cannot bind, it picks new
// ports and tries again, at most startAttempts times; any other failure
// ends it at once.
func (s *Server) startFresh(pick portSource, clusterNode bool) error {
	var err error
	for range startAttempts {
		if err := s.pickPorts(pick, clusterNode); err != nil {
			return fmt.Errorf("find free port: %w", err)
		}
		if err = s.start(); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return fmt.Errorf("ports taken on all %d attempts, the last: %w", startAttempts, err)
}

// pickPorts sets s.Addr, and s.bus for a cluster node, from pick.
func (s *Server) pickPorts(pick portSource, clusterNode bool) error {
	port, err := pick()
	if err != nil {
		return err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if s.tls != nil {
		tport, err := pick()
		if err != nil {
			return err
		}
		s.TLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tport))
	}
	s.bus = 0
	if clusterNode {
		// The bus port would default to port+10000, which nobody checked
		// was free.
		s.bus, err = pick()
	}
	return err
}

// ports names s's ports for error messages.
func (s *Server) ports() string {
	_, port, _ := net.SplitHostPort(s.Addr)
	if s.bus == 0 {
		return "port " + port
	}
	return fmt.Sprintf("port %s (cluster bus port %d)", port, s.bus)
}

// Restart keeps its ports, so it cannot move to fresh ones. The port was
// free a moment ago, and whoever took it most likely holds it briefly (a
// freePort probe, a short connection), so it waits and tries again: eight
// attempts, 10ms apart at first and doubling to at most 500ms, about 1.1s
// of waiting in all.
const (
	restartAttempts   = 8
	restartBackoff    = 10 * time.Millisecond
	restartMaxBackoff = 500 * time.Millisecond
)

// startSamePort starts s again on the ports it had, calling wait(attempt)
// after each failure to bind, at most restartAttempts times. Its error names
// the port that stayed taken.
func (s *Server) startSamePort(wait func(attempt int)) error {
	for attempt := 1; ; attempt++ {
		err := s.start()
		if !errors.Is(err, errPortTaken) {
			return err
		}
		if attempt == restartAttempts {
			return fmt.Errorf("%s still taken after %d attempts: %w", s.ports(), attempt, err)
		}
		wait(attempt)
	}
}

// backoff waits before attempt+1 of startSamePort. It is a retry delay, not
// synchronization: nothing tells us when another process lets go of a port.
func backoff(attempt int) {
	time.Sleep(min(restartBackoff<<(attempt-1), restartMaxBackoff))
}
