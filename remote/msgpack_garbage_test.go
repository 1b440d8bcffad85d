package remote_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// msgpackEnvelope is a value envelope (codec 2, msgpack, uncompressed, no
// expiry) around payload.
func msgpackEnvelope(payload string) string {
	return "\xc1\x01\x01\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00" + payload
}

// TestMsgpackGarbagePanics: a 5-byte msgpack payload announcing an
// array of 2^32-1 elements makes Store.Decode panic. vmihailenco/msgpack
// v5.4.1 decodeSliceValue computes `noLimit := d.flags&disableAllocLimitFlag
// != 1`, which is always true, so it preallocates the announced length.
// With a realistic element type the same bytes are a fatal (unrecoverable)
// out-of-memory crash instead; this element size just makes it a panic
// without allocating. Promise 6: garbage in L2 must never panic.
func TestMsgpackGarbagePanics(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		raw := s.Client(t)
		st := newStore(t, s.Client(t), remote.Options{Codec: remote.Msgpack{}})
		ctx := context.Background()
		if err := raw.Set(ctx, "ns:bad", msgpackEnvelope("\xdd\xff\xff\xff\xff"), 0).Err(); err != nil {
			t.Fatal(err)
		}
		it, ok, err := st.Get(ctx, "bad")
		if !ok || err != nil {
			t.Fatalf("Get = %v, %v; want the (garbage) entry", ok, err)
		}
		var dst [][16384]int64
		var derr error
		panicked := func() (p any) {
			defer func() { p = recover() }()
			derr = st.Decode(it, &dst)
			return nil
		}()
		if panicked != nil {
			t.Errorf("Decode(5 bytes of garbage msgpack) panicked: %v", panicked)
		} else if derr == nil {
			t.Errorf("Decode(garbage) = nil, want a *DecodeError")
		}
	})
}

// TestMsgpackGarbageAllocatesUnbounded: 5 payload bytes make Decode
// allocate 128 MiB (2^24 int64s), far beyond MaxValueSize (1 MiB); with 2^32-1
// the process dies of OOM.
func TestMsgpackGarbageAllocatesUnbounded(t *testing.T) {
	redistest.Run(t, func(t *testing.T, s *redistest.Server) {
		raw := s.Client(t)
		st := newStore(t, s.Client(t), remote.Options{Codec: remote.Msgpack{}})
		ctx := context.Background()
		if err := raw.Set(ctx, "ns:bad", msgpackEnvelope("\xdd\x01\x00\x00\x00"), 0).Err(); err != nil {
			t.Fatal(err)
		}
		it, ok, err := st.Get(ctx, "bad")
		if !ok || err != nil {
			t.Fatalf("Get = %v, %v", ok, err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var dst []int64
		derr := st.Decode(it, &dst)
		runtime.ReadMemStats(&after)
		grew := after.TotalAlloc - before.TotalAlloc
		if limit := uint64(16 << 20); grew > limit {
			t.Errorf("Decode of an 18-byte envelope allocated %d MiB (err %v); want it bounded by MaxValueSize-ish (%d MiB)",
				grew>>20, derr, limit>>20)
		}
		_ = fmt.Sprint(derr)
	})
}

// FuzzMsgpackDecode feeds arbitrary bytes to the msgpack codec into typed
// destinations: it must return an error or a value, never panic, and never
// allocate much more than the input could describe.
func FuzzMsgpackDecode(f *testing.F) {
	f.Add([]byte("\xdd\xff\xff\xff\xff"))
	f.Add([]byte("\x93\x01\x02\x03"))
	f.Add([]byte("\x82\xa1a\x01\xa1b\xc0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := remote.Msgpack{}
		var ints []int64
		_ = c.Unmarshal(data, &ints)
		var m map[string][]string
		_ = c.Unmarshal(data, &m)
		var st struct {
			A []int
			B map[string]any
		}
		_ = c.Unmarshal(data, &st)
	})
}
