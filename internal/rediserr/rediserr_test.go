package rediserr

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
)

// replyError is a Redis error reply, as go-redis returns it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ redis.Error = replyError("")

func TestConfig(t *testing.T) {
	tests := []struct {
		give error
		want bool
	}{
		{replyError("NOPERM this user has no permissions to access one of the channels used as arguments"), true},
		{replyError("ERR The user executing the script can't publish to the channel mentioned in the command script: x, on @user_script:1."), true},
		{replyError("NOPERM this user has no permissions to access one of the keys used as arguments"), true},
		{replyError("NOPERM this user has no permissions to run the 'evalsha' command"), true},
		{replyError("WRONGPASS invalid username-password pair or user is disabled."), true},
		{replyError("NOAUTH Authentication required."), true},
		{replyError("ERR unknown command 'getex', with args beginning with: 'k'"), true},
		{replyError("LOADING Redis is loading the dataset in memory"), false},
		{replyError("READONLY You can't write against a read only replica."), false},
		{replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{errors.New("dial tcp: connection refused"), false},
		{nil, false},
	}
	for _, tt := range tests {
		name := "nil"
		if tt.give != nil {
			name = tt.give.Error()
		}
		t.Run(name, func(t *testing.T) {
			hint, got := Config(tt.give)
			if got != tt.want || got && hint == "" {
				t.Errorf("Config(%v) = %q, %v; want ok %v with a hint", tt.give, hint, got, tt.want)
			}
		})
	}
}
