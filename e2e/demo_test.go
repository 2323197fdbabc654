package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type statRow struct {
	Name        string   `json:"name"`
	Meshed      int      `json:"meshed"`
	Total       int      `json:"total"`
	RPS         *float64 `json:"rps"`
	SuccessRate *float64 `json:"success_rate"`
	P50         *float64 `json:"latency_ms_p50"`
	P95         *float64 `json:"latency_ms_p95"`
	P99         *float64 `json:"latency_ms_p99"`
}

// The demo's bot sends a fixed cycle of 12 requests at 10 a second: one
// list, one leaderboard and ten votes, the last for doughnut, which always
// fails. So web (inbound) fails 1 in 12, voting 1 in 11 (ten votes and one
// Results call per cycle), emoji never.
var demoExpected = map[string]struct {
	successRate, rps float64
}{
	"web":    {11.0 / 12, 10},
	"voting": {10.0 / 11, 10 * 11.0 / 12},
	"emoji":  {1, 10 * 11.0 / 12},
}

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
	time.Sleep(45 * time.Second)
	var rows map[string]statRow
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := skein(ctx, "stat", "-n", "demo", "--since", "30s", "--api", api, "-o", "json")
		last = out
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
	}
	for name, want := range demoExpected {
		r := rows[name]
		if got := *r.SuccessRate; math.Abs(got-want.successRate) > 0.03 {
			t.Errorf("%s: success rate %.3f, want %.3f within 3 points (from the traffic the bot sends)", name, got, want.successRate)
		}
		if got := *r.RPS; got < 0.7*want.rps || got > 1.3*want.rps {
			t.Errorf("%s: %.2f requests per second, want about %.2f", name, got, want.rps)
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
