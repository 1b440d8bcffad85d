package remote

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec turns values into bytes and back. Its ID is stored in every envelope,
// so a reader never decodes bytes written by another codec: 1 is [JSON], 2 is
// [Msgpack], and user codecs use 128..255. Implementations must be safe for
// concurrent use, and Unmarshal must neither modify data nor keep it.
type Codec interface {
	ID() uint8
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// Codec ids of the built-in codecs, and the first id of user codecs.
const (
	codecNone    uint8 = 0 // negative entries and lease markers carry no codec
	codecJSON    uint8 = 1
	codecMsgpack uint8 = 2
	codecUserMin uint8 = 128
)

// JSON is the default [Codec]: encoding/json, id 1. The zero value is ready
// to use and safe for concurrent use.
type JSON struct{}

var _ Codec = JSON{}

// ID returns 1.
func (JSON) ID() uint8 { return codecJSON }

// Marshal encodes v with json.Marshal.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data into v, a pointer, with json.Unmarshal.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Msgpack is a [Codec] using github.com/vmihailenco/msgpack/v5, id 2. It is
// usually smaller and faster than [JSON]. The zero value is ready to use and
// safe for concurrent use.
type Msgpack struct{}

var _ Codec = Msgpack{}

// ID returns 2.
func (Msgpack) ID() uint8 { return codecMsgpack }

// Marshal encodes v with msgpack.Marshal.
func (Msgpack) Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal decodes data into v, a pointer, with msgpack.Unmarshal, after
// checking the structure of data. The check matters for bytes from the
// network: msgpack v5.4.1 allocates the length an array header announces
// before it reads a single element (its alloc-limit flag test is always
// true), so 5 bytes could ask for gigabytes. Skip walks the structure
// without allocating and fails at the end of the real data.
func (Msgpack) Unmarshal(data []byte, v any) error {
	if err := msgpack.NewDecoder(bytes.NewReader(data)).Skip(); err != nil {
		return fmt.Errorf("msgpack: malformed value: %w", err)
	}
	return msgpack.Unmarshal(data, v)
}
