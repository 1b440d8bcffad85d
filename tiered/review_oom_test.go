package tiered

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestReviewDeleteOnFullRedis: the README says a full Redis under
// noeviction refuses writes "(Set returns the error) and heartbeats still
// go out". A Delete needs no memory, and Redis runs the write script's
// DELs and PUBLISH under OOM (neither is a deny-oom command): a cache
// whose fence is up deletes fine. But a cache that must raise its fence
// first (a cache made after Redis filled up, i.e. any process restarted
// then; any cache after a write whose reply was lost; every cache once
// its fence is 30 minutes old) raises it with a plain SET, which Redis
// refuses with OOM, so the Delete fails and the replaced value stays in
// L2 (and other nodes keep loading it) on exactly the Redis where an
// operator most needs deletes to go through.
//
// Fails before a fix: fresh.Delete = "... raise the write fence: OOM
// command not allowed ...". Fix: raise the fence in a small script
// declared "#!lua flags=allow-oom" (the fence key is a few dozen bytes),
// as the heartbeat already is, or fold the raise into the write script.
func TestReviewDeleteOnFullRedis(t *testing.T) {
	s := redistest.Real(t)
	ctx := context.Background()
	up := newNode[string](t, s, nil)
	if err := up.Set(ctx, "k", "v0"); err != nil { // up's fence is raised
		t.Fatal(err)
	}
	admin := s.Client(t)
	fillUntilOOM(t, admin)
	fresh := newNode[string](t, s, nil) // usable: heartbeats allow OOM
	if err := up.Delete(ctx, "other"); err != nil {
		t.Fatalf("Delete through a cache whose fence is up, on a full Redis: %v (the premise fails)", err)
	}
	if err := fresh.Delete(ctx, "k"); err != nil {
		n, _ := admin.Exists(ctx, "test:k").Result()
		t.Errorf("Delete(k) on a full noeviction Redis = %v; want nil, as a cache whose fence is up gets (test:k still exists: %v)", err, n == 1)
	}
}

// fillUntilOOM caps maxmemory a little above what s uses, with the
// noeviction policy, and writes filler keys until Redis refuses one with
// OOM. The cap stays for the rest of the test.
func fillUntilOOM(t *testing.T, admin *redis.Client) {
	t.Helper()
	ctx := context.Background()
	info, err := admin.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			used, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if err := admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", fmt.Sprint(used+2<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	filler := strings.Repeat("x", 16<<10)
	for i := 0; ; i++ {
		err := admin.Set(ctx, fmt.Sprint("filler:", i), filler, 0).Err()
		if err != nil && strings.HasPrefix(err.Error(), "OOM") {
			return
		}
		if err != nil || i > 10000 {
			t.Fatalf("filling Redis: %d keys, %v", i, err)
		}
	}
}
