package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestDashboardInABrowser runs the demo mesh, serves `skein dashboard` in
// front of it and reads every page in a real headless Chromium: the
// overview's success rates are skein stat's, the edge graph has skein
// edges' edges, a workload's charts draw their series, live tap shows
// requests within 5 s. Each page's screenshot is saved (and must not be
// blank) in $SKEIN_TEST_ARTIFACTS or a directory the test logs.
func TestDashboardInABrowser(t *testing.T) {
	requireRoot(t)
	browser := chromiumBinary(t)
	dir, err := os.MkdirTemp("", "skein-e2e-dashboard-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	artifacts := artifactDir(t)
	state := filepath.Join(dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := skein(ctx, "demo", "-d", "--state-dir", state); err != nil {
		t.Fatalf("skein demo: %v\n%s", err, out)
	}
	t.Cleanup(func() { skein(context.Background(), "down", "--state-dir", state) })
	api := "unix:" + filepath.Join(state, "api.sock")
	base := startDashboardCommand(t, ctx, api)

	tab := startChromium(t, ctx, browser, filepath.Join(dir, "chromium"))
	shoot := func(name string) {
		t.Helper()
		saveScreenshot(t, tab, filepath.Join(artifacts, name+".png"))
	}

	t.Run("overview", func(t *testing.T) {
		// The demo needs a window of traffic before every workload has
		// numbers, and while the window fills they move fast: the page and
		// skein stat read a moment apart. So compare until they agree, and
		// report the last disagreement if they never do (a page showing
		// other numbers than the API's never will).
		agreeWithin(t, 90*time.Second, 3*time.Second, func() []string {
			page, ready := overviewSuccessRates(t, tab, base+"#/?namespace=demo&since=30s")
			cli, rows := statSuccessRates(t, ctx, api)
			var mismatches []string
			for name := range demoExpected {
				got, ok := page[name]
				want, wok := cli[name]
				switch {
				case !ok || !wok:
					mismatches = append(mismatches, fmt.Sprintf("%s: overview shows %v, skein stat %v: want both", name, page, cli))
				case math.Abs(got-want) > 2:
					mismatches = append(mismatches, fmt.Sprintf("%s: overview success rate %.1f%%, skein stat -o json %.1f%%: want within 2 points", name, got, want))
				}
				// Every replica of the demo is ready once skein demo -d
				// has returned.
				if r := rows[name]; r.Total == 0 || r.Ready == nil || *r.Ready != r.Total || ready[name] != fmt.Sprintf("%d/%d", r.Total, r.Total) {
					mismatches = append(mismatches, fmt.Sprintf("%s: overview shows %q ready, skein stat -o json %s of %d: want every replica in both", name, ready[name], countText(r.Ready), r.Total))
				}
			}
			if len(mismatches) == 0 {
				t.Logf("overview success rates %v, skein stat %v", page, cli)
			}
			return mismatches
		})
		shoot("overview")
	})

	t.Run("services and routes", func(t *testing.T) {
		navigate(t, tab, base+"#/services?namespace=demo", "#services-table tbody tr[data-service]")
		shoot("services")
		navigate(t, tab, base+"#/routes?namespace=demo&workload=web", "#routes-table tbody tr[data-route]")
		shoot("routes")
	})

	t.Run("edges", func(t *testing.T) {
		// The CLI and the page read the same 1-minute window a moment
		// apart, so an edge whose requests sit at the window's edge can be
		// in one read and not the other: compare until they agree, and
		// report the last disagreement if they never do.
		agreeWithin(t, 30*time.Second, 2*time.Second, func() []string { return edgeGraphProblems(t, ctx, tab, api, base) })
		shoot("edges")
	})

	t.Run("workload charts", func(t *testing.T) {
		// Each chart needs a line: points with data, which take a few
		// scrapes after the demo starts (8, so the screenshot shows one).
		var counts map[string][]int
		deadline := time.Now().Add(120 * time.Second)
		for {
			navigate(t, tab, "about:blank", "body")
			navigate(t, tab, base+"#/workload/demo/web?range=5m", "#chart-latency")
			var err error
			counts, err = chromedp.Run(tab, chromedp.Evaluate[map[string][]int](`Object.fromEntries(
				['chart-rps', 'chart-success', 'chart-latency'].map((id) => [id,
					[...document.querySelectorAll('#' + id + ' path.series')].map((p) => Number(p.dataset.points))]))`))
			if err != nil {
				t.Fatal(err)
			}
			if chartsDrawn(counts) || time.Now().After(deadline) {
				break
			}
			time.Sleep(3 * time.Second)
		}
		t.Logf("points per series: %v", counts)
		if !chartsDrawn(counts) {
			t.Errorf("web's charts never drew every series as a line (request rate 1, success rate 1, latency 3 series of %d points or more)", chartPoints)
		}
		shoot("workload")
	})

	t.Run("replicas", func(t *testing.T) {
		// emoji's page lists its three replicas, each ready and each
		// serving its share of web's calls.
		agreeWithin(t, 60*time.Second, 3*time.Second, func() []string {
			navigate(t, tab, "about:blank", "body")
			navigate(t, tab, base+"#/workload/demo/emoji", "#replicas tbody tr[data-pod]")
			cells, err := chromedp.Run(tab, chromedp.Evaluate[map[string][2]string](`Object.fromEntries(
				[...document.querySelectorAll('#replicas tbody tr[data-pod]')].map(
					(tr) => [tr.dataset.pod, ['ready', 'rps'].map((c) => tr.querySelector('td[data-col=' + c + ']').textContent.trim())]))`))
			if err != nil {
				t.Fatal(err)
			}
			var problems []string
			for i := range 3 {
				pod := fmt.Sprintf("emoji-%d", i)
				if c, ok := cells[pod]; !ok || c[0] != "1/1" || c[1] == "-" {
					problems = append(problems, fmt.Sprintf("replicas table %v: want %s ready 1/1 with traffic", cells, pod))
				}
			}
			if len(cells) != 3 {
				problems = append(problems, fmt.Sprintf("replicas table %v: want emoji's three replicas only", cells))
			}
			return problems
		})
		shoot("replicas")
	})

	t.Run("live tap", func(t *testing.T) {
		// 5 s from opening the page to the first row.
		start := time.Now()
		// Only vote-bot's calls (under /api/): web's readiness probes come
		// in plaintext from the node, so their rows name no identity.
		navigate(t, tab, base+"#/tap?namespace=demo&resource=deploy/web&path=/api/", "#tap-table")
		waitCtx, cancel := context.WithDeadline(tab, start.Add(5*time.Second))
		defer cancel()
		err := chromedp.Do(waitCtx, chromedp.WaitVisible(`#tap-table tbody tr.tap-row`))
		status, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('tap-status').textContent`))
		if err != nil {
			shoot("tap")
			t.Fatalf("no tap rows within 5 s (status: %q): %v", status, err)
		}
		t.Logf("first tap row %v after opening the page", time.Since(start).Round(time.Millisecond))
		// A row opens to the request's identities, headers and bodies.
		detailCtx, cancelDetail := context.WithTimeout(tab, 10*time.Second)
		defer cancelDetail()
		if err := chromedp.Do(detailCtx, chromedp.Click(`#tap-table tbody tr.tap-row td.path`), chromedp.WaitVisible(`#tap-table tr.tap-details`)); err != nil {
			t.Errorf("a tap row did not open to its details: %v", err)
		} else if text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('#tap-table tr.tap-details').innerText`)); !strings.Contains(text, "spiffe://") {
			t.Errorf("a tap row's details name no verified identity:\n%s", text)
		}
		shoot("tap")
		navigate(t, tab, base+"#/top?namespace=demo&resource=deploy/web", "#top-table")
		waitCtx2, cancel2 := context.WithTimeout(tab, 10*time.Second)
		defer cancel2()
		if err := chromedp.Do(waitCtx2, chromedp.WaitVisible(`#top-table tbody tr.top-row`)); err != nil {
			t.Errorf("live top shows no rows within 10 s: %v", err)
		}
		time.Sleep(3 * time.Second)
		shoot("top")
	})
	t.Logf("screenshots in %s", artifacts)
}

// chartPoints is how many points each of a workload's series must have.
const chartPoints = 8

// chartsDrawn reports whether a workload page drew every series with at
// least chartPoints points.
func chartsDrawn(counts map[string][]int) bool {
	for id, want := range map[string]int{"chart-rps": 1, "chart-success": 1, "chart-latency": 3} {
		if len(counts[id]) != want {
			return false
		}
		for _, n := range counts[id] {
			if n < chartPoints {
				return false
			}
		}
	}
	return true
}

// chromiumBinary is Debian's chromium (scripts/setup.sh installs it), or
// $SKEIN_CHROMIUM.
func chromiumBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SKEIN_CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("Chromium is not installed at %s (run scripts/setup.sh, or set SKEIN_CHROMIUM): %v", bin, err)
	}
	return bin
}

// artifactDir is $SKEIN_TEST_ARTIFACTS/TestName, or a new directory under
// the system's temp directory that outlives the test.
func artifactDir(t *testing.T) string {
	t.Helper()
	var dir string
	if root := os.Getenv("SKEIN_TEST_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "skein-artifacts-"+t.Name()+"-"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("artifacts (screenshots) in %s", dir)
	return dir
}

var dashboardURL = regexp.MustCompile(`http://127\.0\.0\.1:\d+/`)

// startDashboardCommand runs `skein dashboard` until the test ends and
// returns the URL it printed.
func startDashboardCommand(t *testing.T, ctx context.Context, api string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "skein"), "dashboard", "--api", api)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("skein dashboard printed nothing: %v %s", lines.Err(), stderr.String())
	}
	url := dashboardURL.FindString(lines.Text())
	if url == "" {
		t.Fatalf("skein dashboard printed %q, want its URL", lines.Text())
	}
	go func() {
		for lines.Scan() {
		}
	}()
	return url
}

// startChromium starts a headless Chromium with its own profile, quiet
// on the closed network (no first-run, background, component or sync
// fetches, no QUIC), and returns a tab's context.
func startChromium(t *testing.T, ctx context.Context, bin, profile string) context.Context {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1360, 900),
	)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	if _, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pageErrorsScript}); err != nil {
		t.Fatal(err)
	}
	return tab
}

// pageErrorsScript collects, in every document, the script errors and
// unhandled promise rejections: the page must have none.
const pageErrorsScript = `window.__pageErrors = [];
addEventListener('error', (e) => window.__pageErrors.push(String(e.message)));
addEventListener('unhandledrejection', (e) => window.__pageErrors.push(String(e.reason)));`

// checkPageErrors fails the test if the page has thrown.
func checkPageErrors(t *testing.T, tab context.Context) {
	t.Helper()
	errs, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`window.__pageErrors || []`))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("the page threw: %s", e)
	}
}

// agreeWithin runs check, which compares what the page shows with what
// the CLI says, until it finds no disagreement or timeout passes, sleeping
// every between tries; it fails t with the last disagreements.
func agreeWithin(t *testing.T, timeout, every time.Duration, check func() []string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		problems := check()
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Error(p)
			}
			return
		}
		time.Sleep(every)
	}
}

// edgeGraphProblems compares the edge graph with skein edges: every edge
// the CLI lists is drawn, and the demo's three mTLS edges are there.
func edgeGraphProblems(t *testing.T, ctx, tab context.Context, api, base string) []string {
	t.Helper()
	var resp struct {
		Rows []struct {
			SrcWorkload string `json:"src_workload"`
			DstWorkload string `json:"dst_workload"`
			TLS         string `json:"tls"`
		} `json:"rows"`
	}
	out, err := skein(ctx, "edges", "-n", "demo", "--api", api, "-o", "json")
	if err != nil || json.Unmarshal([]byte(out), &resp) != nil || len(resp.Rows) == 0 {
		t.Fatalf("skein edges -n demo -o json: %v\n%s", err, out)
	}
	navigate(t, tab, "about:blank", "body")
	navigate(t, tab, base+"#/edges?namespace=demo", "svg.edge-graph g.edge")
	drawn, err := chromedp.Run(tab, chromedp.Evaluate[[]map[string]string](`[...document.querySelectorAll('svg.edge-graph g.edge')].map(
		(g) => ({src: g.dataset.src, dst: g.dataset.dst, tls: g.dataset.tls, d: g.querySelector('path').getAttribute('d')}))`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("graph edges: %v", drawn)
	var problems []string
	for _, e := range resp.Rows {
		found := false
		for _, g := range drawn {
			if g["src"] == "demo/"+e.SrcWorkload && g["dst"] == "demo/"+e.DstWorkload && g["tls"] == e.TLS && g["d"] != "" {
				found = true
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("edge %s -> %s (tls %s) from skein edges is not in the graph", e.SrcWorkload, e.DstWorkload, e.TLS))
		}
	}
	for _, want := range [][2]string{{"vote-bot", "web"}, {"web", "voting"}, {"web", "emoji"}} {
		found := false
		for _, g := range drawn {
			found = found || g["src"] == "demo/"+want[0] && g["dst"] == "demo/"+want[1] && g["tls"] == "true"
		}
		if !found {
			problems = append(problems, fmt.Sprintf("the graph has no mTLS edge %s -> %s", want[0], want[1]))
		}
	}
	return problems
}

// navigate opens url and waits for the page to have drawn sel.
func navigate(t *testing.T, tab context.Context, url, sel string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(sel)); err != nil {
		text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById('main').innerText`))
		t.Fatalf("%s: %s never appeared (%v); the page says:\n%s", url, sel, err, text)
	}
}

// overviewSuccessRates reads the workloads table: success rate in percent
// by workload, for the rows that have one, and every row's ready cell.
func overviewSuccessRates(t *testing.T, tab context.Context, url string) (rates map[string]float64, ready map[string]string) {
	t.Helper()
	navigate(t, tab, "about:blank", "body")
	navigate(t, tab, url, "#workloads tbody tr[data-workload]")
	cells, err := chromedp.Run(tab, chromedp.Evaluate[map[string][2]string](`Object.fromEntries(
		[...document.querySelectorAll('#workloads tbody tr[data-workload]')].map(
			(tr) => [tr.dataset.workload, ['success', 'ready'].map((c) => tr.querySelector('td[data-col=' + c + ']').textContent.trim())]))`))
	if err != nil {
		t.Fatal(err)
	}
	rates, ready = map[string]float64{}, map[string]string{}
	for name, text := range cells {
		if v, err := strconv.ParseFloat(strings.TrimSuffix(text[0], "%"), 64); err == nil {
			rates[name] = v
		}
		ready[name] = text[1]
	}
	return rates, ready
}

// statSuccessRates is skein stat -n demo -o json's success rates in
// percent, over the window the overview was asked for, and its rows.
func statSuccessRates(t *testing.T, ctx context.Context, api string) (map[string]float64, map[string]statRow) {
	t.Helper()
	out, err := skein(ctx, "stat", "-n", "demo", "--since", "30s", "--api", api, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Rows []statRow `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("skein stat -o json: %v\n%s", err, out)
	}
	rates, rows := map[string]float64{}, map[string]statRow{}
	for _, r := range resp.Rows {
		if r.SuccessRate != nil {
			rates[r.Name] = *r.SuccessRate * 100
		}
		rows[r.Name] = r
	}
	return rates, rows
}

// saveScreenshot writes the whole page as PNG to path and fails the test
// if it is blank: one flat colour, or too few colours to be a page.
func saveScreenshot(t *testing.T, tab context.Context, path string) {
	t.Helper()
	checkPageErrors(t, tab)
	b, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", path, err)
	}
	colours, top := colourCounts(img)
	share := float64(top) / float64(img.Bounds().Dx()*img.Bounds().Dy())
	t.Logf("screenshot %s: %dx%d, %d colours, the commonest covers %.0f%%", path, img.Bounds().Dx(), img.Bounds().Dy(), colours, share*100)
	if colours < 64 || share > 0.97 {
		t.Errorf("screenshot %s looks blank: %d colours, the commonest covers %.1f%%", path, colours, share*100)
	}
}

func colourCounts(img image.Image) (distinct, commonest int) {
	counts := map[uint32]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[(r>>8)<<16|(g>>8)<<8|bl>>8]++
		}
	}
	for _, n := range counts {
		commonest = max(commonest, n)
	}
	return len(counts), commonest
}
