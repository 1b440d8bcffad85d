package redistest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CommandCalls returns how many times the server has run each of cmds
// (lower case, as INFO commandstats names them: "evalsha", "publish"),
// calls refused before they ran included. It needs the real server.
func (s *Server) CommandCalls(tb testing.TB, cmds ...string) int {
	tb.Helper()
	s.needReal(tb, "CommandCalls")
	c := s.admin()
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatalf("INFO commandstats: %v", err)
	}
	n := 0
	for _, line := range strings.Split(info, "\r\n") {
		for _, cmd := range cmds {
			rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":")
			if !ok {
				continue
			}
			for _, f := range strings.Split(rest, ",") {
				for _, field := range []string{"calls=", "rejected_calls="} {
					if v, ok := strings.CutPrefix(f, field); ok {
						c, _ := strconv.Atoi(v)
						n += c
					}
				}
			}
		}
	}
	return n
}

// WaitScripts waits until the server has run at least n scripts (EVAL and
// EVALSHA, refused ones included) since it started, or fails the test
// after 5s. A request held in the network has no other sign of having
// landed when it changes nothing.
func (s *Server) WaitScripts(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := s.CommandCalls(tb, "evalsha", "eval")
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the server ran %d scripts in 5s, want %d", got, n)
		}
		time.Sleep(2 * time.Millisecond) // poll: nothing signals a script's run
	}
}

// Evict makes the real server evict key the way a full Redis does: it caps
// maxmemory a little above what is used, with the allkeys-lru policy, and
// writes filler keys ("redistest:filler:n", 1 KiB each) until key is gone,
// then lifts the cap and puts the policy back. It fails the test if key
// survives 100,000 fillers.
func (s *Server) Evict(tb testing.TB, key string) {
	tb.Helper()
	s.needReal(tb, "Evict")
	c := s.admin()
	defer c.Close()
	ctx := context.Background()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		tb.Fatalf("INFO memory: %v", err)
	}
	var used int64
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			used, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	policy, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		tb.Fatalf("CONFIG GET maxmemory-policy: %v", err)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		tb.Fatalf("CONFIG SET maxmemory-policy: %v", err)
	}
	if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+256<<10, 10)).Err(); err != nil {
		tb.Fatalf("CONFIG SET maxmemory: %v", err)
	}
	defer func() {
		if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
			tb.Errorf("CONFIG SET maxmemory 0: %v", err)
		}
		if err := c.ConfigSet(ctx, "maxmemory-policy", policy["maxmemory-policy"]).Err(); err != nil {
			tb.Errorf("CONFIG SET maxmemory-policy back: %v", err)
		}
	}()
	filler := strings.Repeat("x", 1024)
	for i := range 1000 {
		pipe := c.Pipeline()
		for j := range 100 {
			pipe.Set(ctx, "redistest:filler:"+strconv.Itoa(i*100+j), filler, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatalf("fill: %v", err)
		}
		n, err := c.Exists(ctx, key).Result()
		if err != nil {
			tb.Fatalf("EXISTS %q: %v", key, err)
		}
		if n == 0 {
			return
		}
	}
	tb.Fatalf("redistest: %q still there after 100,000 filler keys", key)
}
