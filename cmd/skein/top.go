package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/tap"
)

// Bounds of top's memory, whatever the traffic: requests waiting for their
// end event, and rows.
const (
	maxTopPending = 10000
	maxTopRows    = 10000
)

// TopResponse is skein top -o json: the busiest paths seen in Duration.
type TopResponse struct {
	Resource  string   `json:"resource"`
	Namespace string   `json:"namespace"`
	Duration  string   `json:"duration"`
	Rows      []TopRow `json:"rows"`
	// Dropped counts the events the proxies dropped (over the cap):
	// requests top did not see.
	Dropped uint64 `json:"dropped"`
	// Untracked counts requests not shown because top was already
	// tracking as many paths or open requests as it keeps.
	Untracked uint64   `json:"untracked,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}

// TopRow is one path: requests from Source to Destination with Method and
// Path (and Route, when one matched).
type TopRow struct {
	Source      string  `json:"source"`
	Destination string  `json:"destination"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Route       string  `json:"route,omitempty"`
	Count       uint64  `json:"count"`
	Successes   uint64  `json:"successes"`
	SuccessRate float64 `json:"successRate"`
	BestMs      float64 `json:"bestMs"`
	WorstMs     float64 `json:"worstMs"`
	LastMs      float64 `json:"lastMs"`
}

type topKey struct{ source, dest, method, path, route string }

// topTable folds tap events into rows: a request counts when its end
// event arrives; latency is the response's (the end's duration when there
// was no response).
type topTable struct {
	mu        sync.Mutex
	pending   map[pendingKey]pendingReq
	rows      map[topKey]*TopRow
	dropped   uint64
	untracked uint64
	errors    []string
}

type pendingKey struct {
	proxy  string
	stream uint64
}

type pendingReq struct {
	key       topKey
	latencyMs float64
	responded bool
}

func newTopTable() *topTable {
	return &topTable{pending: map[pendingKey]pendingReq{}, rows: map[topKey]*TopRow{}}
}

func (t *topTable) add(e tap.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pk := pendingKey{e.Proxy, e.Stream}
	switch e.Kind {
	case tap.KindDropped:
		t.dropped += e.Dropped
	case tap.KindError:
		if len(t.errors) < 100 {
			t.errors = append(t.errors, e.Proxy+": "+e.Error)
		}
	case tap.KindRequest:
		if len(t.pending) >= maxTopPending {
			t.untracked++
			return
		}
		path, _, _ := strings.Cut(e.Path, "?") // a path, not each query
		t.pending[pk] = pendingReq{key: topKey{source: resourceOf(e.Source), dest: resourceOf(e.Dest), method: e.Method, path: path, route: e.Route}}
	case tap.KindResponse:
		if p, ok := t.pending[pk]; ok {
			p.latencyMs, p.responded = e.LatencyMs, true
			t.pending[pk] = p
		}
	case tap.KindEnd:
		p, ok := t.pending[pk]
		if !ok {
			return // its request came before top started, or was dropped
		}
		delete(t.pending, pk)
		row := t.rows[p.key]
		if row == nil {
			if len(t.rows) >= maxTopRows {
				t.untracked++
				return
			}
			row = &TopRow{Source: p.key.source, Destination: p.key.dest, Method: p.key.method, Path: p.key.path, Route: p.key.route,
				BestMs: math.Inf(1)}
			t.rows[p.key] = row
		}
		latency := p.latencyMs
		if !p.responded {
			latency = e.DurationMs
		}
		row.Count++
		if succeeded(e) {
			row.Successes++
		}
		row.BestMs = min(row.BestMs, latency)
		row.WorstMs = max(row.WorstMs, latency)
		row.LastMs = latency
		row.SuccessRate = float64(row.Successes) / float64(row.Count)
	}
}

// succeeded: answered, not a 5xx, and gRPC OK if gRPC.
func succeeded(e tap.Event) bool {
	return e.Status != 0 && e.Status < 500 && (e.GRPCStatus == nil || *e.GRPCStatus == 0) && e.Error == ""
}

// snapshot lists the rows, busiest first.
func (t *topTable) snapshot() (rows []TopRow, dropped, untracked uint64, errs []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rows {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b TopRow) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Destination, b.Destination),
			cmp.Compare(a.Method, b.Method), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Route, b.Route))
	})
	return rows, t.dropped, t.untracked, slices.Clone(t.errors)
}

func newTopCommand() *cobra.Command {
	var flags *tapFlags
	var output string
	var duration, every time.Duration
	var maxRows int
	cmd := &cobra.Command{
		Use:   "top RESOURCE",
		Short: "A live table of the busiest paths of a namespace, workload, pod or service",
		Long: `Taps RESOURCE (as skein tap, same filters) and shows the busiest paths:
source, destination, method, path (or the route that matched), how many
requests ended, best, worst and last latency and success rate, busiest
first, redrawn in place every --every on a terminal (one table after
another when the output is not a terminal). A request between two tapped
proxies is seen by both and counted by both (as linkerd top does). With
-o json it taps for --duration (default 10s) and prints one snapshot
(fields in docs/cli.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != outputTable && output != outputJSON {
				return fmt.Errorf("unknown output format %q (want table or json)", output)
			}
			if output == outputJSON && duration == 0 {
				duration = 10 * time.Second
			}
			if every <= 0 {
				return fmt.Errorf("--every %s: want a positive duration", every)
			}
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			table := newTopTable()
			w := cmd.OutOrStdout()
			start := time.Now()
			var draw sync.WaitGroup
			drawCtx, stopDrawing := context.WithCancel(ctx)
			if output == outputTable {
				draw.Add(1)
				go func() {
					defer draw.Done()
					tick := time.NewTicker(every)
					defer tick.Stop()
					for {
						select {
						case <-drawCtx.Done():
							return
						case <-tick.C:
							writeTopTable(w, table, args[0], maxRows, isTerminal(w))
						}
					}
				}()
			}
			err := flags.readTap(ctx, args[0], func(e tap.Event) error {
				table.add(e)
				return nil
			})
			stopDrawing()
			draw.Wait()
			if err != nil {
				return err
			}
			if output == outputJSON {
				rows, dropped, untracked, errs := table.snapshot()
				if rows == nil {
					rows = []TopRow{}
				}
				for i := range rows {
					rows[i].BestMs = finite(rows[i].BestMs)
				}
				return printOutput(w, outputJSON, TopResponse{Resource: args[0], Namespace: flags.namespace,
					Duration: time.Since(start).Round(time.Millisecond).String(), Rows: rows, Dropped: dropped, Untracked: untracked, Errors: errs}, nil)
			}
			writeTopTable(w, table, args[0], maxRows, isTerminal(w))
			return nil
		},
	}
	flags = addTapFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", outputTable, "output format: table or json")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until interrupted; 10s with -o json)")
	cmd.Flags().DurationVar(&every, "every", time.Second, "how often the table is redrawn")
	cmd.Flags().IntVar(&maxRows, "max-rows", 30, "rows shown (the busiest)")
	return cmd
}

func finite(v float64) float64 {
	if math.IsInf(v, 0) {
		return 0
	}
	return v
}

// writeTopTable draws the table: on a terminal over the last one (cursor
// home, screen cleared), else after it.
func writeTopTable(w io.Writer, t *topTable, resource string, maxRows int, terminal bool) {
	rows, dropped, untracked, errs := t.snapshot()
	var b strings.Builder
	if terminal {
		b.WriteString("\x1b[H\x1b[2J")
	}
	fmt.Fprintf(&b, "skein top %s  %s  dropped=%d", resource, time.Now().Format(time.TimeOnly), dropped)
	if untracked > 0 {
		fmt.Fprintf(&b, " untracked=%d", untracked)
	}
	b.WriteString("\n")
	for _, e := range errs {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tMETHOD\tPATH\tCOUNT\tBEST\tWORST\tLAST\tSUCCESS")
	for i, r := range rows {
		if i == maxRows {
			break
		}
		path := r.Path
		if r.Route != "" {
			path = r.Route
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.1f%%\n", r.Source, r.Destination, r.Method, path, r.Count,
			formatMs(r.BestMs), formatMs(r.WorstMs), formatMs(r.LastMs), r.SuccessRate*100)
	}
	tw.Flush()
	if !terminal {
		b.WriteString("\n")
	}
	io.WriteString(w, b.String())
}

// isTerminal: w is a character device (a terminal), not a pipe or file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
