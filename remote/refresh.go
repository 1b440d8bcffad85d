package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Refresh-ahead. A value close to its expiry is reloaded while it is still
// served. The refresh must run once cluster-wide and must never install a
// value that a write replaced while the loader ran. A lease marker cannot
// serve for the first (it would hide the value from every reader), so a
// refresh takes a lock in a key of its own, in the value's hash slot. For
// the second, every write (Set or Delete, through [Store.Write]) deletes
// the refresh lock of each key it writes, and the refresh's fill installs
// its value only while the lock is still its own, and only over the bytes
// it began from (a key refilled by a load after it expired holds others).

var (
	// beginRefreshScript: KEYS[1] the value, KEYS[2] its refresh lock;
	// ARGV[1] the 8 header bytes of the expiry of the value the caller
	// holds, ARGV[2] our token, ARGV[3] the lock's lifetime in ms. It
	// returns 0 when there is nothing to refresh (no key, or a lease
	// marker: a load is on its way); {1, v} when the key holds another
	// value than the caller's (its expiry differs: someone refreshed or
	// wrote it since); {2, v} when the lock is now ours, also when it was
	// already (the client sent the command again after losing its
	// reply); and 3 when another caller holds it.
	beginRefreshScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 3) == '\193\001\003' then return 0 end
if string.sub(v, 6, 13) ~= ARGV[1] then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) or redis.call('GET', KEYS[2]) == ARGV[2] then return {2, v} end
return 3`)

	// finishRefreshScript: KEYS[1] the value, KEYS[2] its refresh lock;
	// ARGV[1] our token, ARGV[2] the bytes the refresh began from, ARGV[3]
	// the new data (empty: give up, only unlock), ARGV[4] its TTL in ms
	// (0: none). It returns 0, storing nothing, unless the lock is still
	// ours: every write deletes the lock of each key it writes, so a lock
	// still ours means no write came in between. It then frees the lock
	// and stores the data, unless the key holds other bytes than those the
	// refresh began from (a load that refilled it after it expired, say):
	// 1 if it stored, 0 if not. A key that merely expired meanwhile is
	// stored again.
	finishRefreshScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == '' or (cur and cur ~= ARGV[2]) then return 0 end
if ARGV[4] == '0' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1`)
)

// RefreshState is the outcome of [Store.BeginRefresh].
type RefreshState uint8

// Refresh states.
const (
	// RefreshGone: the key holds nothing to refresh (missing, expired, or
	// a lease marker because a load is on its way). The next read loads.
	RefreshGone RefreshState = iota + 1
	// RefreshDone: the key holds another value than the caller's (a
	// refresh or a write replaced it). Refresh.Item is its entry.
	RefreshDone
	// RefreshGranted: the refresh is ours; Refresh.Item is the entry it
	// began from. Finish it with [Store.FinishRefresh].
	RefreshGranted
	// RefreshHeld: another caller is refreshing the key.
	RefreshHeld
	// RefreshUnsupported: refreshes do not run on this client (a Ring)
	// or for this key (its name cannot have a lock in its Cluster slot).
	// Nothing was sent, and nothing is known of the key.
	RefreshUnsupported
)

// String returns "gone", "done", "granted", "held", "unsupported", or
// "RefreshState(n)".
func (r RefreshState) String() string {
	switch r {
	case RefreshGone:
		return "gone"
	case RefreshDone:
		return "done"
	case RefreshGranted:
		return "granted"
	case RefreshHeld:
		return "held"
	case RefreshUnsupported:
		return "unsupported"
	}
	return fmt.Sprintf("RefreshState(%d)", uint8(r))
}

// Refresh is the outcome of [Store.BeginRefresh] for one key.
type Refresh struct {
	State RefreshState
	// Item is the key's entry when State is RefreshDone or RefreshGranted.
	Item Item
	// token and from identify a granted refresh: the lock's value, and
	// the bytes it began from, which the fill must still find.
	token []byte
	from  []byte
}

// refreshLockKey returns the lock key of the full key k ("ns:key"), in k's
// hash slot so that one script can touch both on Cluster, and false when
// no such name exists (k has braces that make no hash tag; such keys are
// not refreshed ahead). The lock lives inside the namespace, so an ACL
// that grants a user the namespace's keys (~ns:*) grants it too, under the
// reserved "ns:\x00" that no key of a user can start with ([Store.CheckKey]).
func refreshLockKey(k string) (string, bool) { return sideKey(k, "refresh") }

// sideKey names a key of the cache's own that belongs with the full key k:
// "ns:\x00<kind>" and k, in k's hash slot, or false when no such name
// exists (k has braces that make no hash tag).
func sideKey(k, kind string) (string, bool) {
	i := strings.IndexByte(k, ':') // a namespace has no ':'
	if i < 0 {
		return "", false
	}
	prefix, rest := k[:i+1], k[i+1:]
	var side string
	if open := strings.IndexByte(k, '{'); open >= 0 {
		if j := strings.IndexByte(k[open+1:], '}'); j > 0 {
			// k's tag, in rest (the namespace has no braces), is the
			// first tag of the side key too.
			side = prefix + "\x00" + kind + ":" + rest
		}
	}
	if side == "" {
		if strings.ContainsAny(k, "{}") {
			return "", false
		}
		side = prefix + "\x00" + kind + "{" + k + "}" // the whole of k is the tag
	}
	return side, hashSlot(side) == hashSlot(k)
}

// BeginRefresh starts a refresh of key, whose value the caller holds with
// the given expiry ([Item.Expiry]): if L2 still holds that value, it takes
// the key's refresh lock for lockTTL (the longest a refresh may take; a
// holder that dies frees the key after it), in one round trip. Only one
// caller across all nodes gets RefreshGranted until the lock is freed, and
// once a refresh stored its value every other caller holding the old one
// gets RefreshDone with the new; see [RefreshState]. Refreshes need every
// write to delete the lock in the same script, so they run on a single
// server (standalone, Sentinel) or Cluster; on any other client, and for a
// key whose name cannot have a lock in its Cluster slot, BeginRefresh
// returns RefreshUnsupported.
//
// When the command ran but its reply was lost and the client sent it
// again, the second run finds our own lock: that is RefreshGranted too. A
// failed round trip returns an error and a Refresh with no State but the
// token of the lock the command may still have taken (its reply timed
// out, or ctx ended while it ran): the caller frees it with
// [Store.AbandonRefresh], so that other nodes' refreshes of the key need
// not wait lockTTL for it.
func (s *Store) BeginRefresh(ctx context.Context, key string, expiry uint64, lockTTL time.Duration) (Refresh, error) {
	if err := s.CheckKey(key); err != nil {
		return Refresh{}, err
	}
	if expiry == 0 || lockTTL <= 0 {
		return Refresh{}, fmt.Errorf("remote refresh %q: expiry and lock TTL must be positive", shortKey(key))
	}
	full := s.prefix + key
	lock, ok := refreshLockKey(full)
	if !ok || s.topo != topoSingle && s.topo != topoCluster {
		return Refresh{State: RefreshUnsupported}, nil
	}
	token := make([]byte, tokenLen)
	_, _ = rand.Read(token) // never fails (crypto/rand, Go 1.24+)
	var stamp [8]byte
	binary.BigEndian.PutUint64(stamp[:], expiry)
	res, now, err := s.evalKeys(ctx, opRefresh, beginRefreshScript, []string{full, lock},
		stamp[:], token, millis(lockTTL))
	if isWrongType(err) {
		return Refresh{State: RefreshGone}, nil
	}
	if errors.Is(err, ErrUnavailable) { // nothing was sent
		return Refresh{}, opError("refresh", key, err)
	}
	if err != nil {
		return Refresh{token: token}, opError("refresh", key, err)
	}
	switch v := res.(type) {
	case int64:
		switch v {
		case 0:
			return Refresh{State: RefreshGone}, nil
		case 3:
			return Refresh{State: RefreshHeld}, nil
		}
	case []any:
		if len(v) == 2 {
			state, _ := v[0].(int64)
			data, isString := v[1].(string)
			if isString && (state == 1 || state == 2) {
				b := stringBytes(data)
				it, r, err := s.read(key, b, now)
				switch {
				case r == readBad && state == 2: // the lock is ours: the caller frees it
					return Refresh{token: token}, err
				case r == readBad:
					return Refresh{}, err
				case r != readEntry && state == 2:
					// Expired by its own header though Redis still holds
					// it: free the lock and let the next read load.
					_ = s.abandon(ctx, full, lock, token) // best effort: the lock expires
					return Refresh{State: RefreshGone}, nil
				case r != readEntry:
					return Refresh{State: RefreshGone}, nil
				case state == 1:
					return Refresh{State: RefreshDone, Item: it}, nil
				}
				s.stats.bytesWritten.Add(uint64(len(token)))
				return Refresh{State: RefreshGranted, Item: it, token: token, from: bytes.Clone(b)}, nil
			}
		}
	}
	return Refresh{token: token}, fmt.Errorf("remote refresh %q: unexpected reply %T", shortKey(key), res)
}

// FinishRefresh ends a granted refresh of key: it frees the lock and, when
// data is not nil, stores data (from [Store.Encode] or
// [Store.EncodeNegative]) for ttl (0: none), but only if the key still holds
// the bytes the refresh began from. It reports whether data was stored:
// false means a write, a delete or another fill came first, and data must
// not be installed anywhere. One round trip.
func (s *Store) FinishRefresh(ctx context.Context, key string, r Refresh, data []byte, ttl time.Duration) (bool, error) {
	if r.State != RefreshGranted || r.token == nil {
		return false, fmt.Errorf("remote refresh %q: not a granted refresh", shortKey(key))
	}
	if data != nil && len(data) == 0 {
		return false, fmt.Errorf("remote refresh %q: empty data", shortKey(key))
	}
	full := s.prefix + key
	lock, _ := refreshLockKey(full)
	res, _, err := s.evalKeys(ctx, opRefresh, finishRefreshScript, []string{full, lock},
		r.token, r.from, data, millis(ttl))
	if err != nil {
		return false, opError("refresh", key, err)
	}
	stored := res == int64(1)
	if stored {
		s.stats.bytesWritten.Add(uint64(len(data)))
	}
	return stored, nil
}

// AbandonRefresh frees key's refresh lock if r still holds it, storing
// nothing; a lock that is gone or another caller's is left alone. r is a
// granted refresh, or the Refresh [Store.BeginRefresh] returned with an
// error, which carries the token of a lock its command may have taken.
// For any other r (nothing was sent, or no lock was granted) it returns
// nil at once; otherwise it takes one round trip. Call it with a context
// of its own: the one that ended the refresh may be why it gives up.
func (s *Store) AbandonRefresh(ctx context.Context, key string, r Refresh) error {
	if r.token == nil {
		return nil
	}
	full := s.prefix + key
	lock, _ := refreshLockKey(full)
	if err := s.abandon(ctx, full, lock, r.token); err != nil {
		return opError("refresh", key, err)
	}
	return nil
}

// appendRefreshLocks appends to keys the refresh lock of each full key in
// full that can have one, for a write script to delete.
func appendRefreshLocks(keys, full []string) []string {
	n := len(full)
	for _, k := range full[:n] {
		if lock, ok := refreshLockKey(k); ok {
			keys = append(keys, lock)
		}
	}
	return keys
}

// abandon frees the refresh lock of full if it holds token.
func (s *Store) abandon(ctx context.Context, full, lock string, token []byte) error {
	_, _, err := s.evalKeys(ctx, opRefresh, finishRefreshScript, []string{full, lock}, token, "", "", 0)
	return err
}
