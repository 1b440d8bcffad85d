package main

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every replica, server, Redis and database a test starts is stopped by the
// test's cleanups; goleak checks that nothing is left running. The shared
// PostgreSQL admin connection is closed first, since it outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	closePostgresAdmin()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
