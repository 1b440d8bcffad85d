package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest value with at least p% of values at or below it.
	rank := int(p/100*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// staleSummary is one staleness row. Trials that never saw the new value
// count as longer than the cap, so a percentile that lands on one of them
// prints as "> cap".
type staleSummary struct {
	trials, stale int
	p50, p99, max string
}

func summarize(trials []trial, cap time.Duration) staleSummary {
	const inf = time.Duration(1<<63 - 1)
	ds := make([]time.Duration, len(trials))
	s := staleSummary{trials: len(trials)}
	for i, t := range trials {
		ds[i] = t.d
		if !t.fresh {
			ds[i] = inf
			s.stale++
		}
	}
	slices.Sort(ds)
	show := func(d time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		if d == inf {
			return "> " + cap.String()
		}
		return formatDuration(d)
	}
	s.p50 = show(percentile(ds, 50))
	s.p99 = show(percentile(ds, 99))
	s.max = show(percentile(ds, 100))
	return s
}

// formatDuration prints d with three significant digits in a unit a reader
// compares at a glance.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f us", float64(d.Nanoseconds())/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d.Nanoseconds())/1e6)
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// table is a plain-text table with left-aligned columns separated by two
// spaces, and a dashed line under the header.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	widths := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			if i < len(widths) {
				widths[i] = max(widths[i], len(c))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i := range widths {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			if i == len(widths)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		b.WriteByte('\n')
	}
	line(t.header)
	dashes := make([]string, len(widths))
	for i, wd := range widths {
		dashes[i] = strings.Repeat("-", wd)
	}
	line(dashes)
	for _, r := range t.rows {
		line(r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
