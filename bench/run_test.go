package bench

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRunSmoke runs the whole benchmark briefly against a redis-server
// child. It checks that every library produced a row, never any speed.
func TestRunSmoke(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH; install it (apt-get install redis-server) to run the smoke test")
	}
	if testing.Short() {
		t.Skip("smoke run skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	cfg := Config{Duration: 50 * time.Millisecond, Trials: 5, StaleCap: 200 * time.Millisecond}
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
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH; install it (apt-get install redis-server) to run this test")
	}
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
