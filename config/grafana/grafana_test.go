package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// testVars are values for every variable the dashboards use, as Grafana
// would substitute one chosen value.
var testVars = map[string]string{"namespace": "demo", "workload": "web", "route": "demo/web", "instance": "10.0.0.1:9996"}

func readAll(t *testing.T) []Contents {
	t.Helper()
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 4 {
		t.Errorf("%d dashboards, want mesh, workload, routes and control plane", len(ds))
	}
	var out []Contents
	for _, d := range ds {
		c, err := Read(d.JSON)
		if err != nil {
			t.Fatalf("%s: %v", d.File, err)
		}
		out = append(out, c)
	}
	return out
}

// TestDashboardsAreWellFormed: each file is a Grafana 10/11 dashboard with
// a unique uid, unique panel ids, the Prometheus datasource variable, and
// every query panel reading through it.
func TestDashboardsAreWellFormed(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, d := range ds {
		var raw struct {
			UID           string `json:"uid"`
			Title         string `json:"title"`
			SchemaVersion int    `json:"schemaVersion"`
			ID            *int   `json:"id"`
			Panels        []map[string]any
			Templating    struct{ List []map[string]any }
		}
		if err := json.Unmarshal(d.JSON, &raw); err != nil {
			t.Fatalf("%s: not JSON: %v", d.File, err)
		}
		if raw.UID == "" || raw.Title == "" || raw.SchemaVersion < 36 || raw.ID != nil {
			t.Errorf("%s: uid %q, title %q, schemaVersion %d, id %v: want a uid, a title, schema 36+ (Grafana 10/11) and a null id", d.File, raw.UID, raw.Title, raw.SchemaVersion, raw.ID)
		}
		if other, dup := uids[raw.UID]; dup {
			t.Errorf("%s and %s share uid %s", other, d.File, raw.UID)
		}
		uids[raw.UID] = d.File
		if len(raw.Templating.List) == 0 || raw.Templating.List[0]["name"] != "datasource" || raw.Templating.List[0]["type"] != "datasource" || raw.Templating.List[0]["query"] != "prometheus" {
			t.Errorf("%s: the first variable is not the Prometheus datasource variable ${datasource}", d.File)
		}
		c, err := Read(d.JSON)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[int]string{}
		for _, p := range c.Panels {
			if other, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("%s: panel %q has id %d, as %q has", d.File, p.Title, p.ID, other)
			}
			ids[p.ID] = p.Title
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", d.File, p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: panel %q: refId %q missing or repeated", d.File, p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
			}
		}
		checkLayout(t, d.File, allPanels(raw.Panels))
		for _, p := range allPanels(raw.Panels) {
			if p["type"] == "row" {
				continue
			}
			if !knownPanelTypes[p["type"].(string)] {
				t.Errorf("%s: panel %q has type %v, not one Grafana 10/11 ships", d.File, p["title"], p["type"])
			}
			if ds, _ := p["datasource"].(map[string]any); ds["uid"] != "${datasource}" || ds["type"] != "prometheus" {
				t.Errorf("%s: panel %q reads datasource %v, want the ${datasource} variable", d.File, p["title"], p["datasource"])
			}
		}
	}
}

var knownPanelTypes = map[string]bool{"timeseries": true, "stat": true, "table": true, "text": true, "gauge": true, "bargauge": true}

// checkLayout: every panel sits in Grafana's 24-column grid and none
// overlaps another.
func checkLayout(t *testing.T, file string, panels []map[string]any) {
	t.Helper()
	type rect struct{ x, y, w, h int }
	var placed []rect
	var titles []string
	for _, p := range panels {
		g, _ := p["gridPos"].(map[string]any)
		num := func(k string) int { f, _ := g[k].(float64); return int(f) }
		r := rect{num("x"), num("y"), num("w"), num("h")}
		if r.w <= 0 || r.h <= 0 || r.x < 0 || r.y < 0 || r.x+r.w > 24 {
			t.Errorf("%s: panel %q at %+v is outside the 24-column grid", file, p["title"], r)
		}
		for i, o := range placed {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("%s: panel %q at %+v overlaps %q at %+v", file, p["title"], r, titles[i], o)
			}
		}
		placed = append(placed, r)
		titles = append(titles, fmt.Sprint(p["title"]))
	}
}

func allPanels(ps []map[string]any) []map[string]any {
	var out []map[string]any
	for _, p := range ps {
		out = append(out, p)
		if sub, ok := p["panels"].([]any); ok {
			var inner []map[string]any
			for _, s := range sub {
				if m, ok := s.(map[string]any); ok {
					inner = append(inner, m)
				}
			}
			out = append(out, allPanels(inner)...)
		}
	}
	return out
}

// TestEveryQueryParsesAndNamesDocumentedMetrics: every panel query, with
// its variables substituted, parses with Prometheus' own PromQL parser,
// every variable is a label_values query over a valid selector, and every
// metric a query selects is documented in docs/metrics.md (where the
// metrics registered in the proxy and the controller are listed), so a
// misspelt name fails here before it shows an empty panel.
func TestEveryQueryParsesAndNamesDocumentedMetrics(t *testing.T) {
	docs, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	for _, c := range readAll(t) {
		for _, v := range c.Variables {
			if v.Type != "query" {
				continue
			}
			sel, label, err := LabelValuesQuery(v.Query)
			if err != nil || label == "" {
				t.Errorf("%s: variable %s: %v", c.UID, v.Name, err)
				continue
			}
			if sel != "" {
				if _, err := p.ParseMetricSelector(Expand(sel, testVars, "1m")); err != nil {
					t.Errorf("%s: variable %s: selector %s: %v", c.UID, v.Name, sel, err)
				}
			}
		}
		for _, panel := range c.Panels {
			for _, tg := range panel.Targets {
				expr := Expand(tg.Expr, testVars, "1m")
				ast, err := p.ParseExpr(expr)
				if err != nil {
					t.Errorf("%s: panel %q query %s: %v\n%s", c.UID, panel.Title, tg.RefID, err, expr)
					continue
				}
				for _, name := range metricNames(ast) {
					if !documented(string(docs), name) {
						t.Errorf("%s: panel %q query %s selects %s, which docs/metrics.md does not name", c.UID, panel.Title, tg.RefID, name)
					}
				}
			}
		}
	}
}

func metricNames(n parser.Node) []string {
	var names []string
	parser.Inspect(n, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// runtimeMetric matches what Prometheus' client library and Prometheus
// itself add to every target (go_*, process_*, up).
var runtimeMetric = regexp.MustCompile(`^(go_|process_|up$)`)

func documented(docs, name string) bool {
	if runtimeMetric.MatchString(name) {
		return true
	}
	base := strings.TrimSuffix(name, "_bucket")
	return strings.Contains(docs, "`"+base+"`")
}

func TestExpand(t *testing.T) {
	got := Expand(`rate(x{namespace="$namespace", ns="${namespace}", n="$name"}[$__rate_interval])`, map[string]string{"namespace": "demo", "name": "a"}, "1m")
	if want := `rate(x{namespace="demo", ns="demo", n="a"}[1m])`; got != want {
		t.Errorf("Expand = %s, want %s", got, want)
	}
}
