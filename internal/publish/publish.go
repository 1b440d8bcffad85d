// Package publish sends a pub/sub message so that it executes on the server
// that serves the channel's subscribers, which is what makes delivery order
// follow publish order for every client kind.
//
// On a standalone or Sentinel client there is one server. On Redis Cluster,
// go-redis subscribes on the master of the channel's hash slot but sends a
// plain PUBLISH (a keyless command) to any node, and the cluster bus then
// relays it: two messages published through different nodes can arrive in
// either order. On a Ring, a pipelined PUBLISH is routed by the word
// "publish" rather than by channel. Sending every message through the
// channel's own node avoids both.
package publish

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Publish sends msg on channel through the node that serves the channel's
// subscribers. It is safe for concurrent use.
//
// On Cluster a failure also refreshes the client's slot map (see Refresh):
// going straight to one node bypasses the cluster client's own handling of
// a dead or moved master, which would otherwise keep pointing at it.
func Publish(ctx context.Context, rdb redis.UniversalClient, channel string, msg []byte) error {
	_, err := Count(ctx, rdb, channel, msg)
	return err
}

// Count is Publish, and returns what PUBLISH does: how many subscribers of
// the server that ran it received msg (on a single server, every one).
func Count(ctx context.Context, rdb redis.UniversalClient, channel string, msg []byte) (int64, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, channel)
		var n int64
		if err == nil {
			n, err = node.Publish(ctx, channel, msg).Result()
		}
		if err != nil {
			Refresh(ctx, rdb)
		}
		return n, err
	}
	// *redis.Client has one server; Ring.Publish routes by channel, as
	// Ring.Subscribe does.
	return rdb.Publish(ctx, channel, msg).Result()
}

// Refresh makes a cluster client reload its slot map, so that after a
// failover it finds the channel's new master; other clients need nothing.
// Callers use it after a failed publish or subscribe. Errors are left to
// the next attempt, which fails again and refreshes again.
func Refresh(ctx context.Context, rdb redis.UniversalClient) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
}

// asWriteScript publishes ARGV[2] on ARGV[1]. Its shebang line without the
// no-writes flag declares it a script that may write, which Redis 7 runs
// only on a master that accepts writes: a replica refuses it (READONLY),
// and so does a master with fewer good replicas than its
// min-replicas-to-write (NOREPLICAS). allow-oom keeps a full Redis
// (maxmemory with noeviction) from refusing it: it writes nothing.
//
// It returns how many subscribers this server has on ARGV[3] (PUBSUB
// NUMSUB), or 0 when ARGV[3] is empty.
var asWriteScript = redis.NewScript("#!lua flags=allow-oom\nredis.call('PUBLISH', ARGV[1], ARGV[2])\n" +
	"if ARGV[3] == '' then return 0 end\nreturn redis.call('PUBSUB', 'NUMSUB', ARGV[3])[2]")

// Writer publishes through a master that accepts writes, where the server
// can say so. It is safe for concurrent use.
type Writer struct {
	plain atomic.Bool // the server cannot run asWriteScript: publish plainly
}

// Publish sends msg on channel as [Publish] does, but as a script that
// Redis 7 runs only on a master accepting writes: it fails with the
// server's READONLY or NOREPLICAS error on a replica (an old master a
// failover demoted, which the client has not left yet) or on a master cut
// off from its replicas (with min-replicas-to-write set), where a plain
// PUBLISH would still be delivered to that server's subscribers. A server
// that cannot run a script with a shebang line (Redis before 7.0,
// miniredis) gets a plain PUBLISH from then on, and so does any client but
// a *redis.Client or a *redis.ClusterClient.
func (w *Writer) Publish(ctx context.Context, rdb redis.UniversalClient, channel string, msg []byte) error {
	_, err := w.PublishCounting(ctx, rdb, channel, msg, "")
	return err
}

// PublishCounting is Publish, and also returns how many subscribers the
// server that ran it has on count (PUBSUB NUMSUB, in the same script), or
// -1 when it cannot tell (a plain PUBLISH was sent).
func (w *Writer) PublishCounting(ctx context.Context, rdb redis.UniversalClient, channel string, msg []byte, count string) (int64, error) {
	var c redis.Scripter
	switch r := rdb.(type) {
	case *redis.Client:
		c = r
	case *redis.ClusterClient:
		node, err := r.MasterForKey(ctx, channel)
		if err != nil {
			Refresh(ctx, rdb)
			return -1, err
		}
		c = node
	}
	if c == nil || w.plain.Load() {
		// A Ring would route a keyless script to any shard, not the
		// channel's; other clients are unknown. Both publish plainly.
		return -1, Publish(ctx, rdb, channel, msg)
	}
	n, err := asWriteScript.EvalSha(ctx, c, nil, channel, msg, count).Int64()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") { // it did not run; EVAL loads it
		n, err = asWriteScript.Eval(ctx, c, nil, channel, msg, count).Int64()
	}
	if err != nil && strings.Contains(err.Error(), "Error compiling script") {
		w.plain.Store(true)
		return -1, Publish(ctx, rdb, channel, msg)
	}
	if err != nil {
		Refresh(ctx, rdb)
		return -1, err
	}
	if count == "" {
		return -1, nil
	}
	return n, nil
}
