package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

type statRow struct {
	Name        string   `json:"name"`
	Workload    string   `json:"workload"`
	Meshed      int      `json:"meshed"`
	Total       int      `json:"total"`
	Ready       *int     `json:"ready"`
	RPS         *float64 `json:"rps"`
	SuccessRate *float64 `json:"success_rate"`
	P50         *float64 `json:"latency_ms_p50"`
	P95         *float64 `json:"latency_ms_p95"`
	P99         *float64 `json:"latency_ms_p99"`
}

// The demo's bot sends a fixed cycle of 12 requests at 10 a second: one
// list, one leaderboard and ten votes, the last for doughnut, which always
// fails. So web (inbound) fails 1 in 12, voting 1 in 11 (ten votes and one
// Results call per cycle), emoji never. Each sees its share of the bot's
// rate: web all of it, voting 11 calls per 12 requests (10 Vote, 1
// Results), emoji 12 (10 Find, 2 List). outcomes is how many kinds of
// answer each gives (web 200 and 500, voting OK and UNKNOWN, emoji OK):
// each replica has a series per kind. web's httpGet readinessProbe adds a
// request a second per replica: skein up probes every second, from the
// hub through the replica's proxy, as a kubelet probes (emoji's and
// voting's tcpSocket probes reach the application directly).
var demoExpected = map[string]struct {
	successRate, rpsShare float64
	outcomes              int
	probesPerReplica      float64 // a second
}{
	"web":    {11.0 / 12, 1, 2, 1},
	"voting": {10.0 / 11, 11.0 / 12, 2, 0},
	"emoji":  {1, 1, 1, 0},
}

// The stat window the test asks for and the local mesh's scrape interval.
const (
	demoStatWindow     = time.Minute
	demoScrapeInterval = 5 * time.Second
)

func TestDemoStatMatchesTheTrafficSent(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp("", "skein-e2e-demo-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := skein(ctx, "demo", "-d", "--state-dir", state); err != nil {
		t.Fatalf("skein demo: %v\n%s", err, out)
	}
	t.Cleanup(func() { skein(context.Background(), "down", "--state-dir", state) })
	api := "unix:" + filepath.Join(state, "api.sock")

	// Let a full window of traffic accumulate, then read the stats.
	time.Sleep(demoStatWindow + 3*demoScrapeInterval)
	var rows map[string]statRow
	var last string
	var statAt time.Time
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := skein(ctx, "stat", "-n", "demo", "--since", demoStatWindow.String(), "--api", api, "-o", "json")
		last, statAt = out, time.Now()
		if err == nil {
			var resp struct {
				Rows []statRow `json:"rows"`
			}
			if json.Unmarshal([]byte(out), &resp) == nil {
				rows = map[string]statRow{}
				for _, r := range resp.Rows {
					rows[r.Name] = r
				}
				if demoStatsComplete(rows) {
					break
				}
			}
		}
		time.Sleep(2 * time.Second)
	}
	if !demoStatsComplete(rows) {
		t.Fatalf("skein stat -n demo never showed every workload with traffic:\n%s", last)
	}
	t.Logf("skein stat -n demo -o json:\n%s", last)
	for _, name := range []string{"web", "emoji", "voting", "vote-bot"} {
		r := rows[name]
		if r.Total == 0 || r.Meshed != r.Total {
			t.Errorf("%s: meshed %d/%d, want every replica meshed", name, r.Meshed, r.Total)
		}
		if r.Ready == nil || *r.Ready != r.Total {
			t.Errorf("%s: ready %s of %d, want every replica ready", name, countText(r.Ready), r.Total)
		}
	}
	sent := botRate(t, filepath.Join(state, "logs", "vote-bot-0.log"), statAt)
	// rate() over the window takes each series' increase between its first
	// and last scrapes and stretches it to the whole window, so it is the
	// series' rate over what it sampled: at least the window less two
	// scrape intervals (50 s). A workload's replicas are scraped at moments
	// of their own, so each misses its own few seconds at either end; and
	// the balancer moves a replica's share of the calls within seconds
	// (emoji's replicas took 6 to 74 of a 10 s span's 100 calls). What one
	// replica gained in an end its series missed is therefore not made up
	// by the others' series, which did not miss that end. Measured over
	// 223 evaluations a second apart, with the demo beside two busy loops
	// on this 2-core machine, emoji's raw counters equal to what web sent
	// it: a 30 s window was off by up to 0.72 RPS (p99 0.64), a 1 min
	// window by up to 0.42 (p99 0.36). So 8 requests per series over the
	// 50 s; doubled counts, a missed replica or a wrong share are off by
	// 0.8 RPS and more. The bot's own reports cover the window in 10 s
	// pieces that do not line up with it: the spread of their rates bounds
	// what that can hide. (Before: 3 requests per series over a 30 s
	// window, which failed a CI run at 10.48 against 10.000; and before
	// that anything within 30% passed.)
	perSeries := 8 / (demoStatWindow - 2*demoScrapeInterval).Seconds()
	for name, want := range demoExpected {
		r := rows[name]
		probes, bot := want.probesPerReplica*float64(r.Total), want.rpsShare*sent.rate
		// The probes succeed.
		wantSuccess := (bot*want.successRate + probes) / (bot + probes)
		if got := *r.SuccessRate; math.Abs(got-wantSuccess) > 0.03 {
			t.Errorf("%s: success rate %.3f, want %.3f within 3 points (from the traffic the bot sends and the probes)", name, got, wantSuccess)
		}
		series := float64(r.Total * want.outcomes)
		wantRPS, tolerance := bot+probes, want.rpsShare*sent.spread+series*perSeries
		t.Logf("%s: %.3f requests per second, the bot's traffic and the probes make %.3f, tolerance %.3f", name, *r.RPS, wantRPS, tolerance)
		if got := *r.RPS; math.Abs(got-wantRPS) > tolerance {
			t.Errorf("%s: %.3f requests per second, want the %.3f the bot sent and the %.0f probes within %.3f", name, got, wantRPS, probes, tolerance)
		}
		if !(*r.P50 > 0 && *r.P50 <= *r.P95 && *r.P95 <= *r.P99) {
			t.Errorf("%s: latency p50/p95/p99 = %v/%v/%v ms, want positive and ordered", name, *r.P50, *r.P95, *r.P99)
		}
	}
	// And the table a person reads.
	table, err := skein(ctx, "stat", "-n", "demo", "--api", api)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(table)
}

// botTraffic is what the demo's bot says it sent over a stat window.
type botTraffic struct {
	rate   float64 // requests per second over the reports that overlap the window
	spread float64 // between the fastest and the slowest of those reports
}

var botReport = regexp.MustCompile(`^time=(\S+) .*msg="traffic sent" .*\bwindow=(\S+) requests=(\d+) `)

// botRate reads the bot's reports ("traffic sent", one per 10 s) that
// overlap the stat window ending at end, waiting for the one that covers
// end.
func botRate(t *testing.T, logPath string, end time.Time) botTraffic {
	t.Helper()
	type report struct {
		end      time.Time
		window   time.Duration
		requests int
	}
	var reports []report
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		reports = reports[:0]
		for _, l := range strings.Split(string(b), "\n") {
			m := botReport.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			at, err1 := time.Parse(time.RFC3339Nano, m[1])
			w, err2 := time.ParseDuration(m[2])
			n, err3 := strconv.Atoi(m[3])
			if err := errors.Join(err1, err2, err3); err != nil {
				t.Fatalf("bot report %q: %v", l, err)
			}
			if at.After(end.Add(-demoStatWindow)) && at.Add(-w).Before(end) {
				reports = append(reports, report{at, w, n})
			}
		}
		if len(reports) > 0 && !reports[len(reports)-1].end.Before(end) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report of the bot's covers %s in %s", end.Format(time.RFC3339), logPath)
		}
		time.Sleep(time.Second)
	}
	var requests int
	var window time.Duration
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range reports {
		requests += r.requests
		window += r.window
		rate := float64(r.requests) / r.window.Seconds()
		lo, hi = min(lo, rate), max(hi, rate)
	}
	sent := botTraffic{rate: float64(requests) / window.Seconds(), spread: hi - lo}
	t.Logf("the bot's %d reports over the stat window: %d requests in %v, %.3f a second (spread %.3f)",
		len(reports), requests, window, sent.rate, sent.spread)
	return sent
}

func demoStatsComplete(rows map[string]statRow) bool {
	for name := range demoExpected {
		r, ok := rows[name]
		if !ok || r.RPS == nil || r.SuccessRate == nil || r.P50 == nil || r.P95 == nil || r.P99 == nil {
			return false
		}
	}
	_, ok := rows["vote-bot"]
	return ok
}

// countText is a count the API may leave null, as JSON has it.
func countText(n *int) string {
	if n == nil {
		return "null"
	}
	return strconv.Itoa(*n)
}
