package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs -demo with few reads and checks its story: the update's new
// price reaches replicas 2 and 3, and everything is stopped.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runDemo(ctx, demoConfig{Replicas: 3, Reads: 20, Out: &out})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("runDemo: %v", err)
	}
	put := regexp.MustCompile(`PUT /products/1 \{"price":\d+\} through replica 1: (\$\d+\.\d\d)`).FindStringSubmatch(out.String())
	if put == nil {
		t.Fatal("no update line in the output")
	}
	for _, r := range []string{"2", "3"} {
		if want := "replica " + r + " serves the new price " + put[1]; !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, want := range []string{"L1 hit ratio", "database queries", "stopped 3 replicas"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
