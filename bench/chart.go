package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	panelWidth  = 260
	plotHeight  = 220
	plotLeft    = 50 // room for the y axis labels
	plotTop     = 70 // room for the title and legend
	plotBottom  = 50 // room for scenario names
	barWidth    = 14
	chartMargin = 10
)

var percentileBars = []struct {
	label, colour string
	value         func(Latency) float64
}{
	{"p50", "#4e79a7", func(l Latency) float64 { return l.P50 }},
	{"p90", "#f28e2b", func(l Latency) float64 { return l.P90 }},
	{"p99", "#e15759", func(l Latency) float64 { return l.P99 }},
}

// WriteChart draws the summaries' p50/p90/p99 latency as an SVG bar chart:
// one panel per protocol and rate, one group of bars per scenario.
func (r *Report) WriteChart(w io.Writer) error {
	type panel struct {
		title     string
		summaries []Summary
	}
	var panels []*panel
	byTitle := map[string]*panel{}
	for _, s := range r.Summaries {
		title := fmt.Sprintf("%s at %d rps", s.Protocol, s.Rate)
		if s.Rate == 0 {
			title = fmt.Sprintf("%s at saturation (%d conns)", s.Protocol, r.Settings.SaturationConnections)
		}
		p, ok := byTitle[title]
		if !ok {
			p = &panel{title: title}
			byTitle[title] = p
			panels = append(panels, p)
		}
		p.summaries = append(p.summaries, s)
	}
	width := chartMargin*2 + max(1, len(panels))*panelWidth
	height := plotTop + plotHeight + plotBottom
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", chartMargin,
		html.EscapeString(fmt.Sprintf("Request latency (ms), median of %d x %s, 1 connection", r.Settings.Repetitions, r.Settings.Duration)))
	for i, bar := range percentileBars {
		x := chartMargin + i*60
		fmt.Fprintf(&b, `<rect x="%d" y="28" width="12" height="12" fill="%s"/><text x="%d" y="38">%s</text>`+"\n", x, bar.colour, x+16, bar.label)
	}
	for i, p := range panels {
		drawPanel(&b, chartMargin+i*panelWidth, p.title, p.summaries)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// drawPanel draws one protocol and rate: an axis scaled to the largest
// p99, and for each scenario three bars.
func drawPanel(b *strings.Builder, left int, title string, summaries []Summary) {
	top, bottom := plotTop, plotTop+plotHeight
	x0, x1 := left+plotLeft, left+panelWidth-10
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, top-12, html.EscapeString(title))
	var highest float64
	for _, s := range summaries {
		highest = max(highest, s.Latency.P99, s.Latency.P90, s.Latency.P50)
	}
	scaleMax, step := niceAxis(highest)
	y := func(v float64) float64 { return float64(bottom) - v/scaleMax*plotHeight }
	for v := 0.0; v <= scaleMax+step/2; v += step {
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			x0, x1, y(v), y(v), x0-4, y(v)+4, trimFloat(v))
	}
	fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>`+"\n", x0, x0, top, bottom)
	fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>`+"\n", x0, x1, bottom, bottom)
	groupWidth := float64(x1-x0) / float64(max(1, len(summaries)))
	for i, s := range summaries {
		center := float64(x0) + groupWidth*(float64(i)+0.5)
		barsLeft := center - float64(len(percentileBars)*barWidth)/2
		for j, bar := range percentileBars {
			v := bar.value(s.Latency)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s %s: %.3f ms</title></rect>`+"\n",
				barsLeft+float64(j*barWidth), y(v), barWidth-2, float64(bottom)-y(v), bar.colour,
				html.EscapeString(s.Scenario), bar.label, v)
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", center, bottom+16, html.EscapeString(s.Scenario))
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">p99 %.2f</text>`+"\n", center, bottom+30, s.Latency.P99)
	}
}

// niceAxis returns an axis maximum at or above v and a tick step, both
// 1, 2 or 5 times a power of ten, with about five ticks.
func niceAxis(v float64) (top, step float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 0.2
	}
	raw := v / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * pow
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	return math.Ceil(v/step) * step, step
}

func trimFloat(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}
