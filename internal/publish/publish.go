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

	"github.com/redis/go-redis/v9"
)

// Publish sends msg on channel through the node that serves the channel's
// subscribers. It is safe for concurrent use.
//
// On Cluster a failure also refreshes the client's slot map (see Refresh):
// going straight to one node bypasses the cluster client's own handling of
// a dead or moved master, which would otherwise keep pointing at it.
func Publish(ctx context.Context, rdb redis.UniversalClient, channel string, msg []byte) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, channel)
		if err == nil {
			err = node.Publish(ctx, channel, msg).Err()
		}
		if err != nil {
			Refresh(ctx, rdb)
		}
		return err
	}
	// *redis.Client has one server; Ring.Publish routes by channel, as
	// Ring.Subscribe does.
	return rdb.Publish(ctx, channel, msg).Err()
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
