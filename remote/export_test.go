package remote

// UseScriptLease makes s take leases with the Lua script, as it does after a
// server older than Redis 7.0 refuses SET with NX and GET.
func UseScriptLease(s *Store) { s.scriptLease.Store(true) }

// RefreshLockKey exposes refreshLockKey and HashSlot hashSlot to the tests.
var (
	RefreshLockKey = refreshLockKey
	HashSlot       = hashSlot
)

// FenceKey returns the Redis key of s's write fence.
func FenceKey(s *Store) string { return s.fence.fenceKey(s.prefix) }
