// Package saturate adds durations and nanosecond clock readings without
// wrapping around: a sum past the int64 range is cut to its nearest end.
// Users write the largest time.Duration for "no limit", and a deadline
// that overflowed into the past would turn that into "no time at all".
package saturate

import "math"

// Add returns a+b, or math.MaxInt64 (math.MinInt64) when the sum is
// larger (smaller) than an int64 holds.
func Add[T ~int64](a, b T) T {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}
