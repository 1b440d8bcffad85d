package remote

import (
	"fmt"
)

// KeyError reports a key that cannot be stored: empty, or longer than
// [Options.MaxKeySize]. [Store.CheckKey] and every method that takes keys
// return it.
type KeyError struct {
	Key    string // the key as given, cut to 64 bytes for readability
	Len    int    // length of the key in bytes
	Limit  int    // Options.MaxKeySize
	Reason string // "empty" or "too long"
}

func (e *KeyError) Error() string {
	if e.Len == 0 {
		return "remote: key is empty"
	}
	return fmt.Sprintf("remote: key %q is %s: %d bytes, limit %d", e.Key, e.Reason, e.Len, e.Limit)
}

// ValueSizeError reports an envelope larger than [Options.MaxValueSize].
// [Store.Encode], [Store.Write] and [Store.Fill] return it.
type ValueSizeError struct {
	Key   string
	Size  int // bytes of the envelope, with the value counted before compression
	Limit int // Options.MaxValueSize
}

func (e *ValueSizeError) Error() string {
	return fmt.Sprintf("remote: value of key %q is %d bytes, limit %d", e.Key, e.Size, e.Limit)
}

// DecodeError reports bytes read from Redis that are not a valid envelope for
// this [Store]: garbage, a truncated or unknown header, another codec, corrupt
// compression, or a payload the codec rejects. Reads treat such a key as a
// miss, count it in [Stats].DecodeErrors and return this error next to ok=false.
type DecodeError struct {
	Key    string
	Reason string
	Err    error // the codec's or decompressor's error, if any
}

func (e *DecodeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("remote: decode %q: %s: %v", e.Key, e.Reason, e.Err)
	}
	return fmt.Sprintf("remote: decode %q: %s", e.Key, e.Reason)
}

// Unwrap returns the underlying codec or decompressor error, if any.
func (e *DecodeError) Unwrap() error { return e.Err }

// shortKey cuts a key for an error message, so a megabyte of key does not
// end up in a log line.
func shortKey(key string) string {
	const max = 64
	if len(key) <= max {
		return key
	}
	return key[:max] + "..."
}
