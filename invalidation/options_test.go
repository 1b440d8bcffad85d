package invalidation

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestOptionsWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		give Options
		want string
	}{
		{
			name: "zero",
			give: Options{},
			want: "channel=tiercache:invalidation staleness=2s heartbeat=500ms grace=500ms confirm=1s",
		},
		{
			name: "derived from MaxStaleness",
			give: Options{MaxStaleness: 400 * time.Millisecond},
			want: "channel=tiercache:invalidation staleness=400ms heartbeat=100ms grace=100ms confirm=1s",
		},
		{
			name: "set fields kept",
			give: Options{Channel: "c", MaxStaleness: time.Second, HeartbeatInterval: 3 * time.Millisecond, GapGrace: 5 * time.Millisecond, ConfirmTimeout: 7 * time.Millisecond},
			want: "channel=c staleness=1s heartbeat=3ms grace=5ms confirm=7ms",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.give.withDefaults()
			got := fmt.Sprintf("channel=%s staleness=%v heartbeat=%v grace=%v confirm=%v",
				o.Channel, o.MaxStaleness, o.HeartbeatInterval, o.GapGrace, o.ConfirmTimeout)
			if got != tt.want || o.Logger == nil {
				t.Errorf("withDefaults() = %s (Logger %v), want %s and a Logger", got, o.Logger, tt.want)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	tests := []struct {
		name string
		give Options
		want string // "" for valid
	}{
		{name: "defaults", give: Options{Redis: rdb}, want: ""},
		{name: "no Redis", give: Options{}, want: "invalidation: Options.Redis is required"},
		// The defaults derived from a bad MaxStaleness are reported too:
		// validate names every problem at once.
		{name: "negative MaxStaleness", give: Options{Redis: rdb, MaxStaleness: -1}, want: "invalidation: Options.MaxStaleness must be > 0, got -1ns\n" +
			"invalidation: Options.HeartbeatInterval must be > 0, got 0s\ninvalidation: Options.GapGrace must be > 0, got 0s"},
		{name: "two problems", give: Options{GapGrace: -1, ConfirmTimeout: -1}, want: "invalidation: Options.Redis is required\n" +
			"invalidation: Options.GapGrace must be > 0, got -1ns\ninvalidation: Options.ConfirmTimeout must be > 0, got -1ns"},
		{name: "negative HeartbeatInterval", give: Options{Redis: rdb, HeartbeatInterval: -1}, want: "invalidation: Options.HeartbeatInterval must be > 0, got -1ns"},
		{name: "negative GapGrace", give: Options{Redis: rdb, GapGrace: -1}, want: "invalidation: Options.GapGrace must be > 0, got -1ns"},
		{name: "negative ConfirmTimeout", give: Options{Redis: rdb, ConfirmTimeout: -1}, want: "invalidation: Options.ConfirmTimeout must be > 0, got -1ns"},
		{
			name: "heartbeat too slow",
			give: Options{Redis: rdb, HeartbeatInterval: time.Second},
			want: "invalidation: Options.HeartbeatInterval (1s) must be less than Options.MaxStaleness/2 (1s)",
		},
		{
			name: "grace too long",
			give: Options{Redis: rdb, GapGrace: 1500 * time.Millisecond},
			want: "invalidation: Options.HeartbeatInterval + Options.GapGrace (2s) must be less than Options.MaxStaleness (2s)",
		},
		{
			// The sum must not wrap around to a negative, and pass.
			name: "grace the largest duration",
			give: Options{Redis: rdb, GapGrace: math.MaxInt64},
			want: "invalidation: Options.HeartbeatInterval + Options.GapGrace (2562047h47m16.854775807s) must be less than Options.MaxStaleness (2s)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errString(tt.give.withDefaults().validate()); got != tt.want {
				t.Errorf("validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

// errString returns err's message, or "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// slotKey is the part of a Redis Cluster key (or channel) that picks its
// slot and Ring shard: its hash tag if it has one, else all of it.
func slotKey(s string) string {
	if open := strings.IndexByte(s, '{'); open >= 0 {
		if n := strings.IndexByte(s[open+1:], '}'); n > 0 {
			return s[open+1 : open+1+n]
		}
	}
	return s
}

// TestBeatChannel: a heartbeat channel starts with the shared channel, so
// an ACL on the channel's prefix covers it, and maps to the same slot.
func TestBeatChannel(t *testing.T) {
	tests := []struct {
		give string
	}{
		{"tiercache:invalidation"},
		{"{app}:inval"},
		{"inval:{app}"},
		{"x"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got := beatChannel(tt.give, []byte{0xab, 0xcd})
			if !strings.HasPrefix(got, tt.give) {
				t.Errorf("beatChannel(%q) = %q, want it to start with the channel", tt.give, got)
			}
			if slotKey(got) != slotKey(tt.give) {
				t.Errorf("beatChannel(%q) = %q hashes on %q, the channel on %q", tt.give, got, slotKey(got), slotKey(tt.give))
			}
		})
	}
}
