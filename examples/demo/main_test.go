package main

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the demo on its embedded Redis; it prints to stdout.
func TestRun(t *testing.T) {
	if err := run(""); err != nil {
		t.Fatalf("run: %v", err)
	}
}
