package invalidation

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/saturate"
)

// Options configures a [Bus]. Redis is required; every other zero field
// means its default.
//
//	Redis              client to subscribe and send heartbeats with  Required.
//	Channel            pub/sub channel                                Default: "tiercache:invalidation".
//	MaxStaleness       longest an L1 serves without proof of liveness Default: 2s.
//	HeartbeatInterval  time between heartbeats                        Default: MaxStaleness/4 (500ms).
//	GapGrace           how long a peer's sequence gap may stay open   Default: MaxStaleness/4 (500ms).
//	ConfirmTimeout     how long New waits for each confirmation       Default: 1s.
//	Logger             where state changes are logged                 Default: discarded.
type Options struct {
	// Redis is the client the bus makes its subscription from and publishes
	// heartbeats on. The bus never closes it. Required.
	Redis redis.UniversalClient

	// Channel is the pub/sub channel every node of one deployment shares.
	// Default: "tiercache:invalidation".
	Channel string

	// MaxStaleness bounds how long after a write an L1 may still serve the
	// old value: the bus reports [Bus.Usable] only while it has heard its
	// own heartbeat sent less than MaxStaleness (minus a tenth as a margin
	// for timer lateness) ago. Default: 2s.
	MaxStaleness time.Duration

	// HeartbeatInterval is the time between heartbeats. It must be less than
	// MaxStaleness/2, so that one lost or late heartbeat does not make the
	// bus unusable. Default: MaxStaleness/4 (500ms).
	HeartbeatInterval time.Duration

	// GapGrace is how long a gap in a peer's sequence numbers may stay open
	// before the bus clears every L1. A peer publishes over several
	// connections, so its messages can arrive out of order; a gap usually
	// closes within a millisecond, but a write that waits for a pooled
	// connection can hold one open far longer, and each needless clear costs
	// every node its L1. A gap shows up when the peer's next invalidation
	// arrives. It is a second line of defence: Redis delivers every message
	// on a live subscription, a broken one is caught by the liveness proof,
	// and a write carries its own announcement (see the package comment),
	// so a gap that never closes means a message was lost in a way none of
	// those see. HeartbeatInterval + GapGrace must be less than
	// MaxStaleness. Default: MaxStaleness/4 (500ms).
	GapGrace time.Duration

	// ConfirmTimeout bounds how long [New] waits for the subscription
	// confirmation (an error if it does not arrive) and then for its own
	// first heartbeat (New returns the bus anyway; it becomes usable when
	// the heartbeat arrives). It also bounds each resubscription attempt.
	// Default: 1s.
	ConfirmTimeout time.Duration

	// Logger receives state changes: bypass entered and left, subscription
	// lost and re-established, sequence gaps. Each kind is logged at most
	// once a second. Default: discarded.
	Logger *slog.Logger
}

const (
	defaultChannel        = "tiercache:invalidation"
	defaultMaxStaleness   = 2 * time.Second
	defaultConfirmTimeout = time.Second
)

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.Channel == "" {
		o.Channel = defaultChannel
	}
	if o.MaxStaleness == 0 {
		o.MaxStaleness = defaultMaxStaleness
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = o.MaxStaleness / 4
	}
	if o.GapGrace == 0 {
		o.GapGrace = o.MaxStaleness / 4
	}
	if o.ConfirmTimeout == 0 {
		o.ConfirmTimeout = defaultConfirmTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// validate reports every problem in o at once; o must have its defaults.
func (o Options) validate() error {
	var errs []error
	if o.Redis == nil {
		errs = append(errs, errors.New("invalidation: Options.Redis is required"))
	}
	if o.MaxStaleness <= 0 {
		errs = append(errs, fmt.Errorf("invalidation: Options.MaxStaleness must be > 0, got %v", o.MaxStaleness))
	}
	if o.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("invalidation: Options.HeartbeatInterval must be > 0, got %v", o.HeartbeatInterval))
	}
	if o.GapGrace <= 0 {
		errs = append(errs, fmt.Errorf("invalidation: Options.GapGrace must be > 0, got %v", o.GapGrace))
	}
	if o.ConfirmTimeout <= 0 {
		errs = append(errs, fmt.Errorf("invalidation: Options.ConfirmTimeout must be > 0, got %v", o.ConfirmTimeout))
	}
	if strings.ContainsAny(o.Channel, "{}") && !hasHashTag(o.Channel) {
		errs = append(errs, fmt.Errorf("invalidation: Options.Channel %q has braces but no Redis Cluster hash tag (\"{tag}\" with a non-empty tag); use none, or a whole tag", o.Channel))
	}
	if o.MaxStaleness > 0 && o.HeartbeatInterval > 0 && o.HeartbeatInterval >= o.MaxStaleness/2 {
		errs = append(errs, fmt.Errorf("invalidation: Options.HeartbeatInterval (%v) must be less than Options.MaxStaleness/2 (%v)",
			o.HeartbeatInterval, o.MaxStaleness/2))
	}
	// The sum saturates: wrapped around to a negative, it would pass.
	sum := saturate.Add(o.HeartbeatInterval, o.GapGrace)
	if o.MaxStaleness > 0 && o.HeartbeatInterval > 0 && o.GapGrace > 0 && sum >= o.MaxStaleness {
		errs = append(errs, fmt.Errorf("invalidation: Options.HeartbeatInterval + Options.GapGrace (%v) must be less than Options.MaxStaleness (%v)",
			sum, o.MaxStaleness))
	}
	return errors.Join(errs...)
}

// margin is how much earlier than MaxStaleness the watchdog declares the bus
// unusable, to absorb a late timer.
func (o Options) margin() time.Duration { return o.MaxStaleness / 10 }
