package bench

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := time.Millisecond
	ten := []time.Duration{1 * ms, 2 * ms, 3 * ms, 4 * ms, 5 * ms, 6 * ms, 7 * ms, 8 * ms, 9 * ms, 10 * ms}
	tests := []struct {
		name string
		give []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", []time.Duration{7 * ms}, 99, 7 * ms},
		{"p50 of ten", ten, 50, 5 * ms},
		{"p99 of ten", ten, 99, 10 * ms},
		{"max of ten", ten, 100, 10 * ms},
		{"p10 of ten", ten, 10, 1 * ms},
		{"p11 of ten", ten, 11, 2 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.give, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.give, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeCountsStale(t *testing.T) {
	trials := make([]trial, 100)
	for i := range trials {
		trials[i] = trial{d: time.Duration(i+1) * time.Microsecond, fresh: true}
	}
	trials[3] = trial{d: 2 * time.Second, fresh: false}
	got := summarize(trials, 2*time.Second)
	want := staleSummary{trials: 100, stale: 1, p50: "51.0 us", p99: "100.0 us", max: "> 2s"}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
}

func TestTableAligns(t *testing.T) {
	tb := table{header: []string{"library", "ns/op", "note"}}
	tb.add("tiercache", "53.2", "")
	tb.add("go-redis GET", "38800.0", "baseline")
	var b strings.Builder
	if err := tb.write(&b); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"library       ns/op    note\n" +
		"------------  -------  --------\n" +
		"tiercache     53.2     \n" +
		"go-redis GET  38800.0  baseline\n"
	if got := b.String(); got != want {
		t.Errorf("table =\n%s\nwant\n%s", got, want)
	}
}
