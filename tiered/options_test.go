package tiered

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

func TestOptionsValidate(t *testing.T) {
	s := redistest.Mini(t)
	rdb := s.Client(t)
	tests := []struct {
		name string
		give Options
		want string
	}{
		{"no redis", Options{Namespace: "n"}, "tiered new: Options.Redis: required"},
		{"no namespace", Options{Redis: rdb}, "tiered new: Options.Namespace: required"},
		{"namespace with colon", Options{Redis: rdb, Namespace: "a:b"}, `tiered new: Options.Namespace: "a:b" must not contain ':', '{' or '}'`},
		{"namespace with brace", Options{Redis: rdb, Namespace: "{a}"}, "Options.Namespace"},
		{"local ttl above ttl", Options{Redis: rdb, Namespace: "n", TTL: time.Second, LocalTTL: time.Minute}, "tiered new: Options.LocalTTL: 1m0s must not exceed TTL (1s)"},
		{"negative ttl", Options{Redis: rdb, Namespace: "n", TTL: -time.Second}, "tiered new: Options.TTL: must not be negative, got -1s"},
		{"negative cost", Options{Redis: rdb, Namespace: "n", LocalMaxCost: -1}, "tiered new: Options.LocalMaxCost: must not be negative, got -1"},
		{"tiny value size", Options{Redis: rdb, Namespace: "n", MaxValueSize: 10}, "tiered new: Options.MaxValueSize: must be at least 30"},
		{"heartbeat too slow", Options{Redis: rdb, Namespace: "n", HeartbeatInterval: time.Second}, "tiered new: Options.HeartbeatInterval: 1s must be less than MaxStaleness/2 (1s)"},
		{"reserved codec", Options{Redis: rdb, Namespace: "n", Codec: reservedCodec{}}, "tiered new: Options.Codec: ID 7 is reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New[string](tt.give)
			if err == nil {
				_ = c.Close()
				t.Fatalf("New(%s) = nil error, want one containing %q", tt.name, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) error = %q, want it to contain %q", tt.name, err, tt.want)
			}
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Errorf("New(%s) error %q is not an *OptionError", tt.name, err)
			}
		})
	}
}

// reservedCodec is JSON under an ID kept for the library's own codecs.
type reservedCodec struct{ remote.JSON }

func (reservedCodec) ID() uint8 { return 7 }

// TestNewReportsEveryError: one New names every bad field, not the first.
func TestNewReportsEveryError(t *testing.T) {
	_, err := New[string](Options{Namespace: "a{b", NegativeTTL: -1, LocalMaxCost: -5, BreakerMinOpen: 2 * time.Second, BreakerMaxOpen: time.Second})
	if err == nil {
		t.Fatal("New with four bad fields = nil error")
	}
	for _, field := range []string{"Options.Redis", "Options.Namespace", "Options.NegativeTTL", "Options.LocalMaxCost", "Options.BreakerMaxOpen"} {
		if !strings.Contains(err.Error(), "tiered new: "+field+": ") {
			t.Errorf("New error = %q, want a line for %s", err, field)
		}
	}
	var n int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var oe *OptionError
		if errors.As(e, &oe) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("New error joins %d *OptionError, want 5", n)
	}
}

// TestOptionsStringMatchesDoc compares Options{}.String() with the table in
// the Options doc comment, line by line, so neither can drift.
func TestOptionsStringMatchesDoc(t *testing.T) {
	src, err := os.ReadFile("options.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	doc = doc[strings.Index(doc, "// Options configures a [Cache]."):strings.Index(doc, "type Options struct {")]
	row := regexp.MustCompile(`(?m)^//\t(\w+=\S+)`)
	var want []string
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		want = append(want, m[1])
	}
	got := strings.Split(strings.TrimSuffix(Options{}.String(), "\n"), "\n")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Options{}.String() and the Options doc table differ:\n got: %q\ndoc: %q", got, want)
	}
}

// TestOptionsStringHasEveryField: a new Options field must be printed.
func TestOptionsStringHasEveryField(t *testing.T) {
	s := Options{}.String()
	typ := reflect.TypeOf(Options{})
	for i := range typ.NumField() {
		if name := typ.Field(i).Name; !strings.Contains(s, "\n"+name+"=") && !strings.HasPrefix(s, name+"=") {
			t.Errorf("Options.String() does not print %s:\n%s", name, s)
		}
	}
}

// TestOptionsStringEffective: String shows what the cache uses, not what
// was given: defaults, and values derived from other fields.
func TestOptionsStringEffective(t *testing.T) {
	s := Options{LoadTimeout: 4 * time.Second, TTL: 30 * time.Second, MaxStaleness: time.Second, Namespace: "p"}.String()
	for _, want := range []string{"\nLeaseWait=2s\n", "\nLocalTTL=30s\n", "\nHeartbeatInterval=250ms\n", "\nCompressThreshold=1KiB\n", "\nNamespace=\"p\"\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, want it to contain %q", s, want)
		}
	}
	// LocalTTL defaults to TTL when TTL is under a minute.
	if got := (Options{TTL: 5 * time.Second}).withDefaults().LocalTTL; got != 5*time.Second {
		t.Errorf("LocalTTL default with TTL=5s = %v, want 5s", got)
	}
}

// TestBadTTLReportedOnce: LocalTTL's default comes from TTL, so a negative
// TTL used to be reported twice, once under a field the caller never set.
func TestBadTTLReportedOnce(t *testing.T) {
	_, err := New[string](Options{Namespace: "n", TTL: -1})
	if err == nil || !strings.Contains(err.Error(), "Options.TTL") {
		t.Fatalf("New with TTL -1 = %v, want an error naming Options.TTL", err)
	}
	if strings.Contains(err.Error(), "LocalTTL") {
		t.Errorf("New with TTL -1 blames LocalTTL, which was not set: %v", err)
	}
}
