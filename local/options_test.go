package local

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		give Options
		want string // the error message; "" for none
	}{
		{name: "zero", give: Options{}, want: ""},
		{name: "all set", give: Options{MaxCost: 1, NumCounters: 1, EpochSlots: 1}, want: ""},
		{name: "max epoch slots", give: Options{EpochSlots: 1 << 24}, want: ""},
		{name: "negative MaxCost", give: Options{MaxCost: -1}, want: "local: Options.MaxCost must be >= 0, got -1"},
		{name: "negative NumCounters", give: Options{NumCounters: -1}, want: "local: Options.NumCounters must be >= 0, got -1"},
		{name: "negative EpochSlots", give: Options{EpochSlots: -1}, want: "local: Options.EpochSlots must be >= 0, got -1"},
		{name: "too many EpochSlots", give: Options{EpochSlots: 1<<24 + 1}, want: "local: Options.EpochSlots must be <= 16777216, got 16777217"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errString(tt.give.validate()); got != tt.want {
				t.Errorf("%+v.validate() = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	c, err := New[string](Options{MaxCost: -1})
	if err == nil || !strings.Contains(err.Error(), "Options.MaxCost") {
		t.Errorf("New(MaxCost: -1) = %v, %v, want an error naming Options.MaxCost", c, err)
	}
}

func TestOptionsWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		give Options
		want Options
	}{
		{
			name: "zero",
			give: Options{},
			want: Options{MaxCost: 64 << 20, NumCounters: 655_360, EpochSlots: 1 << 16},
		},
		{
			name: "small MaxCost raises NumCounters",
			give: Options{MaxCost: 1 << 10},
			want: Options{MaxCost: 1 << 10, NumCounters: 10_000, EpochSlots: 1 << 16},
		},
		{
			name: "large MaxCost caps NumCounters",
			give: Options{MaxCost: 1 << 40},
			want: Options{MaxCost: 1 << 40, NumCounters: 10_000_000, EpochSlots: 1 << 16},
		},
		{
			name: "set fields kept",
			give: Options{MaxCost: 7, NumCounters: 3, EpochSlots: 8},
			want: Options{MaxCost: 7, NumCounters: 3, EpochSlots: 8},
		},
		{
			name: "EpochSlots rounded up",
			give: Options{EpochSlots: 1000},
			want: Options{MaxCost: 64 << 20, NumCounters: 655_360, EpochSlots: 1024},
		},
		{
			name: "one EpochSlot",
			give: Options{EpochSlots: 1},
			want: Options{MaxCost: 64 << 20, NumCounters: 655_360, EpochSlots: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.withDefaults(); got != tt.want {
				t.Errorf("%+v.withDefaults() = %+v, want %+v", tt.give, got, tt.want)
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
