package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the summaries as an aligned table: latency in ms, the
// latency added over the baseline, and each proxy's CPU (ms per 1,000
// requests) and peak RSS (MB).
func (r *Report) WriteTable(w io.Writer) error {
	var roles []string // proxy roles in the order they appear
	for _, s := range r.Summaries {
		for _, p := range s.Proxies {
			if !slices.Contains(roles, p.Role) {
				roles = append(roles, p.Role)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"scenario", "proto", "rate", "rps", "x base", "errors", "p50", "p90", "p99", "max", "+p50", "+p90", "+p99"}
	for _, role := range roles {
		header = append(header, "cpu:"+role)
	}
	for _, role := range roles {
		header = append(header, "rss:"+role)
	}
	turnarounds := r.hasTurnarounds()
	if turnarounds {
		for _, role := range roles {
			header = append(header, "turn:"+role)
		}
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, s := range r.Summaries {
		ratio := "-"
		if s.ThroughputRatio > 0 {
			ratio = fmt.Sprintf("%.2f", s.ThroughputRatio)
		}
		row := []string{s.Scenario, s.Protocol, rateName(s.Rate), fmt.Sprintf("%.1f", s.RPS), ratio, fmt.Sprint(s.Errors),
			ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max)}
		if s.Added != nil {
			row = append(row, signedMs(s.Added.P50), signedMs(s.Added.P90), signedMs(s.Added.P99))
		} else {
			row = append(row, "-", "-", "-")
		}
		costs := map[string]ProxyCost{}
		for _, p := range s.Proxies {
			costs[p.Role] = p
		}
		for _, role := range roles {
			row = append(row, costCell(costs, role, func(p ProxyCost) float64 { return p.CPUPer1k }))
		}
		for _, role := range roles {
			row = append(row, costCell(costs, role, func(p ProxyCost) float64 { return p.PeakRSSMB }))
		}
		if turnarounds {
			for _, role := range roles {
				row = append(row, turnaroundCell(costs, role))
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	saturation := ""
	if r.Settings.SaturationConnections > 0 {
		saturation = fmt.Sprintf(" (rate max: saturation over %d connections; x base: its throughput over %s's)",
			r.Settings.SaturationConnections, r.baseline())
	}
	_, err := fmt.Fprintf(w, "medians of %d repetition(s) of %s at 1 connection%s;\nlatency in ms (+: added over %s); "+
		"cpu: proxy CPU time in ms per 1,000 requests; rss: proxy peak RSS in MB\n",
		r.Settings.Repetitions, r.Settings.Duration, saturation, r.baseline())
	if err == nil && turnarounds {
		_, err = fmt.Fprintln(w, "turn: proxy turnaround, read to next write, p50 / p90 in µs (fixed rates only; the tracing costs the proxies a little)")
	}
	return err
}

// hasTurnarounds reports whether any run was traced for turnarounds.
func (r *Report) hasTurnarounds() bool {
	for _, s := range r.Summaries {
		for _, p := range s.Proxies {
			if p.Turnaround != nil {
				return true
			}
		}
	}
	return false
}

func turnaroundCell(costs map[string]ProxyCost, role string) string {
	p, ok := costs[role]
	if !ok || p.Turnaround == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f/%.0f", p.Turnaround.P50US, p.Turnaround.P90US)
}

// baseline is the scenario added latency is computed against.
func (r *Report) baseline() string {
	if len(r.Settings.Scenarios) == 0 {
		return "nothing"
	}
	return r.Settings.Scenarios[0]
}

func ms(v float64) string       { return fmt.Sprintf("%.3f", v) }
func signedMs(v float64) string { return fmt.Sprintf("%+.3f", v) }

func costCell(costs map[string]ProxyCost, role string, f func(ProxyCost) float64) string {
	p, ok := costs[role]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.1f", f(p))
}
