package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/tiered"
)

// DefaultPrefix is the first part of every metric name when
// [Options].Prefix is empty.
const DefaultPrefix = "tiercache"

// Options configures a collector. The zero value gives the defaults.
type Options struct {
	// Prefix is the first part of every metric name: with "myapp_cache",
	// tiercache_requests_total is exported as myapp_cache_requests_total.
	// The dashboard in this directory expects the default. Default:
	// "tiercache".
	Prefix string
	// Cache is the value of the const label cache on every series of a
	// cache collector. Two caches of one namespace in one process (say, of
	// two value types) registered on one registry need different values:
	// with the same label their series would be duplicates, and the
	// registry refuses the second collector (Register returns an error
	// naming the first duplicate series). The bus collector ignores it.
	// Default: the cache's Options.Namespace.
	Cache string
}

func (o Options) prefix() string {
	if o.Prefix == "" {
		return DefaultPrefix
	}
	return o.Prefix
}

// A table lists every series a collector emits and how to read each one from
// a snapshot S, so that Describe and Collect work from one list and cannot
// disagree.
type table[S any] struct {
	values []value[S]
	hists  []hist[S]
}

// value is one counter or gauge series: a desc shared by its family, the
// series' variable label values, and how to read it.
type value[S any] struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	labels []string
	read   func(*S) float64
}

// hist is one unlabelled histogram.
type hist[S any] struct {
	desc *prometheus.Desc
	read func(*S) tiered.Histogram
}

// describe sends each desc of t once.
func (t *table[S]) describe(ch chan<- *prometheus.Desc) {
	var seen []*prometheus.Desc
	send := func(d *prometheus.Desc) {
		if !slices.Contains(seen, d) {
			seen = append(seen, d)
			ch <- d
		}
	}
	for _, v := range t.values {
		send(v.desc)
	}
	for _, h := range t.hists {
		send(h.desc)
	}
}

// collect sends every series of t, read from s.
func (t *table[S]) collect(s *S, ch chan<- prometheus.Metric) {
	for _, v := range t.values {
		ch <- prometheus.MustNewConstMetric(v.desc, v.typ, v.read(s), v.labels...)
	}
	for _, h := range t.hists {
		ch <- constHistogram(h.desc, h.read(s))
	}
}

// builder adds families to a table under a name prefix and fixed const
// labels.
type builder[S any] struct {
	t           table[S]
	prefix      string
	constLabels prometheus.Labels
}

func (b *builder[S]) desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(b.prefix, subsystem, name), help, labels, b.constLabels)
}

// counter adds a family of one unlabelled counter.
func (b *builder[S]) counter(subsystem, name, help string, read func(*S) uint64) {
	b.add(b.desc(subsystem, name, help), prometheus.CounterValue, nil, func(s *S) float64 { return float64(read(s)) })
}

// gauge adds a family of one unlabelled gauge.
func (b *builder[S]) gauge(subsystem, name, help string, read func(*S) float64) {
	b.add(b.desc(subsystem, name, help), prometheus.GaugeValue, nil, read)
}

func (b *builder[S]) add(d *prometheus.Desc, typ prometheus.ValueType, labels []string, read func(*S) float64) {
	b.t.values = append(b.t.values, value[S]{desc: d, typ: typ, labels: labels, read: read})
}

// labelled is one series of a labelled counter family.
type labelled[S any] struct {
	labels []string
	read   func(*S) uint64
}

// counterVec adds a counter family with variable labels names and one
// series per entry of series.
func (b *builder[S]) counterVec(subsystem, name, help string, names []string, series ...labelled[S]) {
	d := b.desc(subsystem, name, help, names...)
	for _, sr := range series {
		b.add(d, prometheus.CounterValue, sr.labels, func(s *S) float64 { return float64(sr.read(s)) })
	}
}

// gaugeVec adds a family of labelled gauges, one per series.
func (b *builder[S]) gaugeVec(subsystem, name, help string, names []string, series ...labelled[S]) {
	d := b.desc(subsystem, name, help, names...)
	for _, sr := range series {
		b.add(d, prometheus.GaugeValue, sr.labels, func(s *S) float64 { return float64(sr.read(s)) })
	}
}

// histogram adds a family of one unlabelled histogram.
func (b *builder[S]) histogram(subsystem, name, help string, read func(*S) tiered.Histogram) {
	b.t.hists = append(b.t.hists, hist[S]{desc: b.desc(subsystem, name, help), read: read})
}

// constHistogram turns a snapshot into a metric of d with labels.
func constHistogram(d *prometheus.Desc, h tiered.Histogram, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, h.Buckets, labels...)
}
