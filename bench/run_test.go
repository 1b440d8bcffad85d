package bench

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRunSmoke runs the whole benchmark briefly against a redis-server
// child. It checks that every library produced a row, never any speed.
func TestRunSmoke(t *testing.T) {
	needRedisServer(t)
	if testing.Short() {
		t.Skip("smoke run skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	cfg := Config{Duration: 50 * time.Millisecond, Trials: 5, StaleCap: 200 * time.Millisecond, Scenarios: []string{"hot", "staleness"}}
	if err := Run(ctx, cfg, &out); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"GOMAXPROCS=", "Redis ", "tiercache ", "go-redis/cache ", "rueidis ", "go-redis GET ", "ristretto Get "} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestStartRedisClose(t *testing.T) {
	needRedisServer(t)
	srv, err := StartRedis(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pid := srv.cmd.Process.Pid
	srv.Close()
	srv.Close() // idempotent
	if _, err := redisVersion(context.Background(), srv.Addr); err == nil {
		t.Errorf("redis-server (pid %d) at %s still answers after Close", pid, srv.Addr)
	}
}

// needRedisServer skips a test that needs redis-server when it is missing,
// or fails it when TIERCACHE_REQUIRE_REDIS=1, as CI sets.
func needRedisServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("TIERCACHE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server not on PATH and TIERCACHE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-server not on PATH; install it (apt-get install redis-server) to run this test")
	}
}

// TestOutageSmoke runs the outage scenario briefly for every library and
// checks that each produced reads in every phase, never any speed.
func TestOutageSmoke(t *testing.T) {
	needRedisServer(t)
	if testing.Short() {
		t.Skip("smoke run skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := StartRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, lib := range outageLibraries() {
		r, err := runOutage(ctx, lib, srv.Addr, 300*time.Millisecond, 500*time.Millisecond, 300*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", lib.name, err)
		}
		if len(r.before) == 0 || len(r.during) == 0 || len(r.after) == 0 {
			t.Errorf("%s: reads before/during/after = %d/%d/%d, want some in each", lib.name, len(r.before), len(r.during), len(r.after))
		}
	}
}

// TestRefreshSmoke runs the refresh scenario briefly for every system and
// checks that each read, and loaded, never any speed.
func TestRefreshSmoke(t *testing.T) {
	needRedisServer(t)
	if testing.Short() {
		t.Skip("smoke run skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := StartRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, sys := range refreshSystems() {
		r, err := runRefresh(ctx, sys, srv.Addr, 300*time.Millisecond, 700*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", sys.name, err)
		}
		if len(r.lat) == 0 || r.errors > 0 {
			t.Errorf("%s: %d reads measured, %d errors; want reads and no errors", sys.name, len(r.lat), r.errors)
		}
	}
}
