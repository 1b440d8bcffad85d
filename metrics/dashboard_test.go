package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/metrics"
	"github.com/tiercache/tiercache/tiered"
)

// dashboard is the part of Grafana's dashboard JSON model the test reads.
type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

var metricName = regexp.MustCompile(`\btiercache_[a-z0-9_]+`)

// TestDashboard checks that dashboard.json imports as is (a Grafana model
// with a DS_PROMETHEUS input) and that every metric its queries name is one
// the collectors emit, so the two cannot drift apart.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d; want both set and a schemaVersion of Grafana 9 or later", d.UID, d.Title, d.SchemaVersion)
	}

	families := emitted(t,
		metrics.NewCacheCollector(fakeCache{tiered.Stats{Namespace: "m"}}, metrics.Options{}),
		metrics.NewBusCollector(fakeBus{}, metrics.Options{}))
	known := func(name string) bool {
		if _, ok := families[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base] == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	check := func(where, expr string) {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no tiercache metric", where, expr)
		}
		for _, n := range names {
			if !known(n) {
				t.Errorf("%s: %s is not a metric the collectors emit", where, n)
			}
		}
		if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
			t.Errorf("%s: unbalanced brackets in %q", where, expr)
		}
		// Kubernetes service discovery sets a target label namespace, the
		// pod's: the caches' label is cache, and nothing filters on the other.
		if strings.Contains(expr, "namespace") {
			t.Errorf("%s: %q uses the label namespace; the collectors' label is cache", where, expr)
		}
	}

	for _, v := range d.Templating.List {
		check("variable "+v.Name, v.Definition)
	}
	if len(d.Templating.List) != 1 || d.Templating.List[0].Name != "cache" {
		t.Errorf("templating variables %+v, want one named cache", d.Templating.List)
	}
	ids := map[int]bool{}
	titles := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d is zero or not unique", p.Title, p.ID)
		}
		ids[p.ID] = true
		titles[p.Title] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: datasource %+v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			check("panel "+p.Title+" "+tg.RefID, tg.Expr)
		}
	}
	for _, want := range []string{"Hit ratio per tier", "L2 latency", "Invalidation lag", "L1 bypass time", "Loads vs dedupes"} {
		if !titles[want] {
			t.Errorf("no panel titled %q", want)
		}
	}
}

// TestDashboardCoversBusFamilies is a reminder in the other direction: a
// new bus metric should appear on the dashboard or be listed here.
func TestDashboardCoversBusFamilies(t *testing.T) {
	b, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	notShown := map[string]bool{
		// Heartbeat traffic is steady by design; its errors and age are shown.
		"tiercache_invalidation_heartbeats_sent_total":  true,
		"tiercache_invalidation_heartbeats_heard_total": true,
		"tiercache_invalidation_peer_heartbeats_total":  true,
		"tiercache_invalidation_peers":                  true,
		"tiercache_invalidation_registrations":          true,
	}
	for name := range emitted(t, metrics.NewBusCollector(fakeBus{invalidation.Stats{}}, metrics.Options{})) {
		if !notShown[name] && !strings.Contains(string(b), name) {
			t.Errorf("bus metric %s is not on the dashboard", name)
		}
	}
}
