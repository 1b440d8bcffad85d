package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Chart is one panel of a scenario's SVG: horizontal bars, grouped.
//
// By default each row of the section is a group and each key a bar in it.
// With ByCase, each case is a group, each system a bar, and Keys holds one
// key.
type Chart struct {
	Title  string
	Keys   []string
	Labels []string // legend labels, one per key (ByCase: ignored)
	Unit   Unit
	Log    bool
	ByCase bool
}

// palette is colour-blind-safe (Okabe and Ito's eight colours, minus black).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"}

const (
	svgWidth  = 960
	labelW    = 250 // the group labels' column
	valueW    = 90  // room for the value printed after the longest bar
	barH      = 13
	barGap    = 2
	groupGap  = 10
	panelHead = 46 // title and legend
	axisH     = 28
)

// bar is one bar: its value (NaN: none) and colour index.
type bar struct {
	v      float64
	series int
}

type group struct {
	label string
	note  string // shown instead of bars (a skipped row)
	bars  []bar
}

// groups lays a chart's data out.
func (c Chart) groups(s *Section) (gs []group, legend []string) {
	if c.ByCase {
		var cases, syss []string
		for _, r := range s.Rows {
			if !slices.Contains(cases, r.Case) {
				cases = append(cases, r.Case)
			}
			if !slices.Contains(syss, r.System) {
				syss = append(syss, r.System)
			}
		}
		for _, cs := range cases {
			g := group{label: cs}
			for i, sys := range syss {
				v := math.NaN()
				for _, r := range s.Rows {
					if r.System == sys && r.Case == cs && r.Skipped == "" {
						v = r.value(c.Keys[0])
					}
				}
				g.bars = append(g.bars, bar{v, i})
			}
			gs = append(gs, g)
		}
		return gs, syss
	}
	for _, r := range s.Rows {
		label := r.System
		if r.Case != "" {
			label += " · " + r.Case
		}
		g := group{label: label}
		if r.Skipped != "" {
			g.note = r.Skipped
		} else {
			for i, k := range c.Keys {
				g.bars = append(g.bars, bar{r.value(k), i})
			}
		}
		gs = append(gs, g)
	}
	legend = c.Labels
	if len(legend) == 0 {
		legend = c.Keys
	}
	return gs, legend
}

// writeSVG draws every chart of s, one panel under another, into path.
func (s *Section) writeSVG(path string) error {
	var body bytes.Buffer
	y := 22 + 18*float64(len(wrap(s.Title, 105)))
	for _, c := range s.Charts {
		y = c.draw(&body, s, y) + 24
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, y, svgWidth, y)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, line := range wrap(s.Title, 105) {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-size="15" font-weight="bold">%s</text>`+"\n", 22+18*i, esc(line))
	}
	b.Write(body.Bytes())
	b.WriteString("</svg>\n")
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// draw draws one panel with its top at y and returns its bottom.
func (c Chart) draw(b *bytes.Buffer, s *Section, y float64) float64 {
	gs, legend := c.groups(s)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, g := range gs {
		for _, br := range g.bars {
			if !math.IsNaN(br.v) && (!c.Log || br.v > 0) {
				lo, hi = math.Min(lo, br.v), math.Max(hi, br.v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	// The scale: linear from 0, or log over whole decades.
	if c.Log {
		minV := lo
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		if lo >= minV { // the smallest bar would have no length
			lo /= 10
		}
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
	} else {
		lo = math.Min(0, lo)
		if hi <= lo {
			hi = lo + 1
		}
		hi = niceCeil(hi)
	}
	plotW := float64(svgWidth - labelW - valueW - 20)
	x := func(v float64) float64 {
		if c.Log {
			return labelW + plotW*math.Log10(v/lo)/math.Log10(hi/lo)
		}
		return labelW + plotW*(v-lo)/(hi-lo)
	}

	fmt.Fprintf(b, `<text x="10" y="%.0f" font-size="14" font-weight="bold">%s</text>`+"\n", y+14, esc(c.Title))
	lx := 10.0
	for i, l := range legend {
		fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			lx, y+26, palette[i%len(palette)], lx+14, y+35, esc(l))
		lx += 24 + 7*float64(len([]rune(l)))
	}
	top := y + panelHead
	cy := top
	for _, g := range gs {
		n := max(len(g.bars), 1)
		h := float64(n)*(barH+barGap) - barGap
		fmt.Fprintf(b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", labelW-8, cy+h/2+4, esc(g.label))
		if g.note != "" {
			fmt.Fprintf(b, `<text x="%d" y="%.0f" fill="#777" font-style="italic">%s</text>`+"\n", labelW+4, cy+h/2+4, esc(g.note))
		}
		for i, br := range g.bars {
			by := cy + float64(i)*(barH+barGap)
			if math.IsNaN(br.v) || (c.Log && br.v <= 0) {
				fmt.Fprintf(b, `<text x="%d" y="%.0f" fill="#777" font-size="10">n/a</text>`+"\n", labelW+4, by+barH-2)
				continue
			}
			w := math.Max(x(br.v)-labelW, 1)
			fmt.Fprintf(b, `<rect x="%d" y="%.0f" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				labelW, by, w, barH, palette[br.series%len(palette)], esc(legendAt(legend, br.series)+": "+format(br.v, c.Unit)))
			fmt.Fprintf(b, `<text x="%.1f" y="%.0f" font-size="10">%s</text>`+"\n", labelW+w+4, by+barH-2, esc(format(br.v, c.Unit)))
		}
		cy += h + groupGap
	}
	// The axis, with its ticks.
	fmt.Fprintf(b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#333"/>`+"\n", labelW, top-4, labelW, cy)
	fmt.Fprintf(b, `<line x1="%d" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333"/>`+"\n", labelW, cy, labelW+plotW, cy)
	for _, t := range ticks(lo, hi, c.Log) {
		tx := x(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", tx, top-4, tx, cy)
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle" font-size="10">%s</text>`+"\n", tx, cy+14, esc(format(t, c.Unit)))
	}
	scale := "linear scale"
	if c.Log {
		scale = "log scale"
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="end" font-size="10" fill="#555">%s</text>`+"\n", labelW+plotW, cy+axisH, scale)
	return cy + axisH
}

func legendAt(l []string, i int) string {
	if i < len(l) {
		return l[i]
	}
	return ""
}

// ticks are the axis marks: each decade on a log scale, five steps on a
// linear one.
func ticks(lo, hi float64, log bool) []float64 {
	var ts []float64
	if log {
		for t := lo; t <= hi*1.0001; t *= 10 {
			ts = append(ts, t)
		}
		return ts
	}
	for i := range 6 {
		ts = append(ts, lo+(hi-lo)*float64(i)/5)
	}
	return ts
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten, times 5, so
// that five ticks from 0 land on round numbers.
func niceCeil(v float64) float64 {
	step := v / 5
	p := math.Pow(10, math.Floor(math.Log10(step)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= step {
			return 5 * m * p
		}
	}
	return 50 * p
}

// wrap breaks s into lines of at most width runes, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len([]rune(line))+1+len([]rune(w)) > width {
			lines = append(lines, line)
			line = w
			continue
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
