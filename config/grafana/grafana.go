// Package grafana gives Skein's Grafana dashboards (the JSON files in
// charts/skein/files/grafana, the chart's, which `skein install
// --grafana-dashboards` renders as a ConfigMap) to the binaries and
// reads their panels' queries for the tests that run them against a real
// Prometheus. The JSON files are the source: edit them (or export from
// Grafana) and keep every query on the metric names of docs/metrics.md.
package grafana

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/skeinmesh/skein/charts"
)

// Dir is where the dashboards are in the chart.
const Dir = "files/grafana"

var files = charts.Skein()

// Dashboard is one dashboard file.
type Dashboard struct {
	File string // e.g. "mesh.json", also its key in the install's ConfigMap
	JSON []byte
}

// Dashboards returns every dashboard, sorted by file name.
func Dashboards() ([]Dashboard, error) {
	names, err := fs.Glob(files, Dir+"/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]Dashboard, 0, len(names))
	for _, name := range names {
		data, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, err
		}
		out = append(out, Dashboard{File: path.Base(name), JSON: data})
	}
	return out, nil
}

// Target is one query of one panel.
type Target struct {
	PanelID    int
	PanelTitle string
	RefID      string
	Expr       string
}

// Variable is one template variable of a dashboard.
type Variable struct {
	Name  string
	Type  string // "datasource", "query", ...
	Query string // for a query variable, e.g. label_values(request_total, namespace)
}

// Contents is what the tests read of a dashboard.
type Contents struct {
	UID, Title string
	Panels     []Panel
	Variables  []Variable
}

// Panel is one panel (rows included) with its queries.
type Panel struct {
	ID      int
	Type    string
	Title   string
	Targets []Target
}

// Read decodes a dashboard's panels (those inside rows too), their
// queries and its template variables.
func Read(data []byte) (Contents, error) {
	var d struct {
		UID, Title string
		Panels     []jsonPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return Contents{}, err
	}
	c := Contents{UID: d.UID, Title: d.Title}
	var walk func([]jsonPanel)
	walk = func(ps []jsonPanel) {
		for _, p := range ps {
			panel := Panel{ID: p.ID, Type: p.Type, Title: p.Title}
			for _, t := range p.Targets {
				panel.Targets = append(panel.Targets, Target{PanelID: p.ID, PanelTitle: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
			c.Panels = append(c.Panels, panel)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		q, err := variableQuery(v.Query)
		if err != nil {
			return Contents{}, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		c.Variables = append(c.Variables, Variable{Name: v.Name, Type: v.Type, Query: q})
	}
	return c, nil
}

type jsonPanel struct {
	ID      int
	Type    string
	Title   string
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	Panels []jsonPanel
}

// variableQuery is a variable's query, written as a string or, as Grafana
// 10 and later write it, as an object with a query field.
func variableQuery(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var o struct{ Query string }
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("query is neither a string nor an object with a query: %w", err)
	}
	return o.Query, nil
}

// Expand substitutes a query's template variables as Grafana would for
// one chosen value of each: $name and ${name} from vars, $__rate_interval
// and $__interval with window (a PromQL duration such as "1m"). Unknown
// variables are left as they are, so a query that names one fails to parse.
func Expand(expr string, vars map[string]string, window string) string {
	names := make([]string, 0, len(vars)+2)
	values := map[string]string{"__rate_interval": window, "__interval": window}
	for k, v := range vars {
		values[k] = v
	}
	for k := range values {
		names = append(names, k)
	}
	// Longest first, so $namespace is not read as $name followed by "space".
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		expr = strings.ReplaceAll(expr, "${"+n+"}", values[n])
		expr = strings.ReplaceAll(expr, "$"+n, values[n])
	}
	return expr
}

// LabelValuesQuery splits a query variable's label_values(selector, label)
// (or label_values(label)) into its selector ("" when none) and label.
func LabelValuesQuery(q string) (selector, label string, err error) {
	inner, ok := strings.CutPrefix(strings.TrimSpace(q), "label_values(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return "", "", fmt.Errorf("%q is not label_values(...)", q)
	}
	inner = strings.TrimSuffix(inner, ")")
	i := strings.LastIndex(inner, ",")
	if i < 0 {
		return "", strings.TrimSpace(inner), nil
	}
	return strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:]), nil
}
