package devredis

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ping(addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	return rdb.Ping(context.Background()).Err()
}

func TestStartRedisServer(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("TIERCACHE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server not on PATH and TIERCACHE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-server not on PATH")
	}
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != RedisServer {
		t.Errorf("Kind = %q, want %q", s.Kind, RedisServer)
	}
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING %s: %v", s.Addr, err)
	}
	s.Close()
	s.Close() // idempotent
	if err := ping(s.Addr); err == nil {
		t.Errorf("%s still answers after Close", s.Addr)
	}
}

func TestStartWithoutBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := Start(context.Background(), Options{}); !errors.Is(err, ErrNoRedisServer) {
		t.Fatalf("Start without redis-server = %v, want ErrNoRedisServer", err)
	}
	s, err := Start(context.Background(), Options{AllowMiniredis: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Kind != Miniredis {
		t.Errorf("Kind = %q, want %q", s.Kind, Miniredis)
	}
	if err := ping(s.Addr); err != nil {
		t.Fatalf("PING miniredis: %v", err)
	}
}
