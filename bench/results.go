package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Results is one tierbench run: where it ran, with which parameters, and
// every scenario's table. It is what results.json holds.
type Results struct {
	Env       Env            `json:"env"`
	Params    map[string]any `json:"params"`
	Scenarios []*Section     `json:"scenarios"`
}

// Env describes the machine and the Redis a run used.
type Env struct {
	Go         string    `json:"go"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	CPU        string    `json:"cpu"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	NumCPU     int       `json:"num_cpu"`
	Redis      string    `json:"redis_version"`
	RedisKind  string    `json:"redis_kind"` // "redis-server", "miniredis" or "external"
	Started    time.Time `json:"started"`
}

func newEnv(redisVersion, kind string) Env {
	return Env{
		Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, CPU: cpuModel(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		Redis: redisVersion, RedisKind: kind, Started: time.Now().UTC(),
	}
}

// header is the line that opens the markdown output.
func (e Env) header() string {
	return fmt.Sprintf("tierbench: %s %s/%s, CPU %s, GOMAXPROCS=%d, NumCPU=%d, Redis %s (%s)",
		e.Go, e.OS, e.Arch, e.CPU, e.GOMAXPROCS, e.NumCPU, e.Redis, e.RedisKind)
}

// cpuModel reads the CPU's name from /proc/cpuinfo where there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Section is one scenario's table: a row per system (and case), a column
// per figure.
type Section struct {
	Name    string   `json:"name"`
	Title   string   `json:"title"`
	Columns []Column `json:"columns"`
	Rows    []Row    `json:"rows"`
	// Notes say how to read the table; they print under it.
	Notes []string `json:"notes,omitempty"`
	// Charts are drawn from the rows into <name>.svg.
	Charts []Chart `json:"-"`
}

// Column is one figure of a row.
type Column struct {
	Key  string `json:"key"`
	Head string `json:"head"`
	Unit Unit   `json:"unit"`
}

// Unit says how a value prints.
type Unit string

const (
	UnitNs    Unit = "ns"    // a duration in nanoseconds
	UnitCount Unit = "count" // a count or a rate
	UnitFrac  Unit = "frac"  // a fraction in [0, 1], printed as a percentage
	UnitNines Unit = "nines" // -log10(1 - fraction fresh)
	UnitRatio Unit = "ratio" // a ratio to a baseline in the same run
	UnitFloat Unit = "float" // a plain number, two decimals
)

// Row is one system's figures in one case. A row with Skipped set has no
// values: it says why.
type Row struct {
	System  string             `json:"system"`
	Case    string             `json:"case,omitempty"`
	Values  map[string]float64 `json:"values,omitempty"`
	Skipped string             `json:"skipped,omitempty"`
	Note    string             `json:"note,omitempty"`
}

func (s *Section) add(r Row) { s.Rows = append(s.Rows, r) }

// skip adds a row for sys that says why it has no figures.
func (s *Section) skip(sys, c, reason string) {
	s.add(Row{System: sys, Case: c, Skipped: reason})
}

// value returns the row's figure for key, or NaN.
func (r Row) value(key string) float64 {
	v, ok := r.Values[key]
	if !ok {
		return math.NaN()
	}
	return v
}

// format prints v in unit u.
func format(v float64, u Unit) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch u {
	case UnitNs:
		return fmtDur(time.Duration(v))
	case UnitCount:
		if v != math.Trunc(v) && math.Abs(v) < 100 {
			return fmt.Sprintf("%.1f", v)
		}
		return fmt.Sprintf("%.0f", v)
	case UnitFrac:
		switch {
		case v == 1:
			return "100%"
		case v > 0.9999:
			return fmt.Sprintf("%.4f%%", 100*v)
		default:
			return fmt.Sprintf("%.2f%%", 100*v)
		}
	case UnitNines:
		return fmt.Sprintf("%.1f", v)
	case UnitRatio:
		return fmt.Sprintf("%.2f×", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// writeMarkdown prints the section as a markdown table with its notes.
func (s *Section) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", s.Title)
	hasCase := slices.ContainsFunc(s.Rows, func(r Row) bool { return r.Case != "" })
	head := []string{"system"}
	if hasCase {
		head = append(head, "case")
	}
	for _, c := range s.Columns {
		head = append(head, c.Head)
	}
	head = append(head, "note")
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for range head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range s.Rows {
		cells := []string{r.System}
		if hasCase {
			cells = append(cells, r.Case)
		}
		for _, c := range s.Columns {
			if r.Skipped != "" {
				cells = append(cells, "-")
				continue
			}
			cells = append(cells, format(r.value(c.Key), c.Unit))
		}
		note := r.Note
		if r.Skipped != "" {
			note = r.Skipped
		}
		cells = append(cells, strings.ReplaceAll(note, "|", "/"))
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	for _, n := range s.Notes {
		b.WriteString("\n" + n + "\n")
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON writes r to path, indented.
func (r *Results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest value with at least p% of values at or below it.
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// latencies puts the p50, p99 and p99.9 of sorted into v under prefix.
func latencies(v map[string]float64, prefix string, sorted []time.Duration) {
	if len(sorted) == 0 {
		return
	}
	v[prefix+"p50"] = float64(percentile(sorted, 50))
	v[prefix+"p99"] = float64(percentile(sorted, 99))
	v[prefix+"p999"] = float64(percentile(sorted, 99.9))
}

// fmtDur prints d with three significant digits in a unit a reader
// compares at a glance.
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "never"
	case d == 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}
