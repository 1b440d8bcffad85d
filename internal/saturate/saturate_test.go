package saturate

import (
	"math"
	"testing"
	"time"
)

func TestAdd(t *testing.T) {
	tests := []struct {
		name string
		give [2]time.Duration
		want time.Duration
	}{
		{name: "small", give: [2]time.Duration{time.Second, time.Millisecond}, want: time.Second + time.Millisecond},
		{name: "signs differ", give: [2]time.Duration{math.MaxInt64, math.MinInt64}, want: -1},
		{name: "exactly the largest", give: [2]time.Duration{math.MaxInt64 - 1, 1}, want: math.MaxInt64},
		{name: "past the largest", give: [2]time.Duration{math.MaxInt64, 250 * time.Millisecond}, want: math.MaxInt64},
		{name: "both halves past", give: [2]time.Duration{math.MaxInt64/2 + 1, math.MaxInt64/2 + 1}, want: math.MaxInt64},
		{name: "past the smallest", give: [2]time.Duration{math.MinInt64, -1}, want: math.MinInt64},
		{name: "exactly the smallest", give: [2]time.Duration{math.MinInt64 + 1, -1}, want: math.MinInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Add(tt.give[0], tt.give[1]); got != tt.want {
				t.Errorf("Add(%d, %d) = %d, want %d", tt.give[0], tt.give[1], got, tt.want)
			}
		})
	}
}
