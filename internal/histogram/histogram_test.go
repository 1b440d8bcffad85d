package histogram

import (
	"math"
	"testing"
	"time"
)

func TestObserveBuckets(t *testing.T) {
	var h Histogram
	h.Observe(-time.Second)          // counts as 0: first bucket
	h.Observe(40 * time.Microsecond) // first bucket
	h.Observe(3 * time.Millisecond)  // 5ms bucket
	h.Observe(time.Minute)           // +Inf
	s := h.Snapshot()
	if s.Count != 4 {
		t.Errorf("Count = %d, want 4", s.Count)
	}
	tests := []struct {
		give float64
		want uint64
	}{
		{0.00005, 2},
		{0.0025, 2},
		{0.005, 3},
		{30, 3},
	}
	for _, tt := range tests {
		if got := s.Buckets[tt.give]; got != tt.want {
			t.Errorf("Buckets[%v] = %d, want %d", tt.give, got, tt.want)
		}
	}
	if want := 60.003040; math.Abs(s.Sum-want) > 1e-9 {
		t.Errorf("Sum = %v, want %v", s.Sum, want)
	}
	if got := h.Quantile(0.5); got != 0.00005 {
		t.Errorf("Quantile(0.5) = %v, want 0.00005", got)
	}
	if got := h.Quantile(1); !math.IsInf(got, 1) {
		t.Errorf("Quantile(1) = %v, want +Inf", got)
	}
}
