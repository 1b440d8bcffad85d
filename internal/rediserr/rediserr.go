// Package rediserr tells Redis replies that no retry fixes (a missing
// permission, wrong credentials, a command the server does not know) from
// outages, and says what to change, so that remote and invalidation report
// them the same way.
package rediserr

import (
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Config reports whether err is a Redis reply that only a change of
// configuration fixes, and if so, a hint that says what to grant or change.
func Config(err error) (hint string, ok bool) {
	var re redis.Error
	if err == nil || !errors.As(err, &re) {
		return "", false
	}
	msg := re.Error()
	switch {
	case strings.Contains(msg, "channels used as arguments"), strings.Contains(msg, "can't publish to the channel"),
		strings.Contains(msg, "may not publish"):
		return "grant the Redis user the invalidation channel's prefix (&<channel>*, default &tiercache:invalidation*); see the README's Redis requirements", true
	case strings.Contains(msg, "keys used as arguments"), strings.Contains(msg, "can't access at least one of the keys"):
		return "grant the Redis user the namespace's keys (~<namespace>:*); see the README's Redis requirements", true
	case strings.HasPrefix(msg, "NOPERM"), strings.Contains(msg, "can't run this command"):
		return "grant the Redis user the commands tiercache sends (" + Commands + "); see the README's Redis requirements", true
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"):
		return "check the username and password of the Redis client", true
	case strings.Contains(msg, "unknown command"), strings.Contains(msg, "unknown subcommand"):
		return "the server does not know a command tiercache sends (a Redis older than 6.2, or a renamed command); see the README's Redis requirements", true
	}
	return "", false
}

// Commands are the commands tiercache sends, for hints and the README's
// ACL line.
const Commands = "+get +set +del +strlen +mget +getex +eval +evalsha +publish +subscribe +unsubscribe +pubsub|numsub +ping +wait +hello +auth, and on Cluster +cluster|slots +cluster|shards +readonly"
