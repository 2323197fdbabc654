package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/metricsapi"
)

// defaultMetricsAPI is where `skein up` serves the controller's API.
const defaultMetricsAPI = "unix:/run/skein/mesh/api.sock"

// outputWide is the table with more columns, for commands that have them.
const outputWide = "wide"

// metricsFlags are the flags every metrics command (stat, edges, routes)
// takes.
type metricsFlags struct {
	api       string
	namespace string
	since     string
	output    string
}

func addMetricsFlags(cmd *cobra.Command) *metricsFlags {
	f := &metricsFlags{}
	cmd.Flags().StringVar(&f.api, "api", defaultMetricsAPI,
		"the controller's metrics API: unix:PATH, a socket path, or an http(s):// URL")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "", "only this namespace (default: every namespace)")
	cmd.Flags().StringVar(&f.since, "since", metricsapi.DefaultSince, "window rates and percentiles are computed over (30s, 1m, 1h, ...)")
	cmd.Flags().StringVarP(&f.output, "output", "o", outputTable, "output format: table, wide or json")
	return f
}

// checkOutput refuses an unknown -o before anything is fetched.
func (f *metricsFlags) checkOutput() error {
	switch f.output {
	case outputTable, outputWide, outputJSON:
		return nil
	}
	return fmt.Errorf("unknown output format %q (want table, wide or json)", f.output)
}

// get fetches one metrics API route into v, with the common parameters.
func (f *metricsFlags) get(ctx context.Context, path string, params url.Values, v any) error {
	client, err := newMetricsClient(f.api)
	if err != nil {
		return err
	}
	params.Set("namespace", f.namespace)
	params.Set("since", f.since)
	return client.get(ctx, path, params, v)
}

// print writes resp as JSON, or calls table with wide set for -o wide.
func (f *metricsFlags) print(w io.Writer, resp any, table func(w io.Writer, wide bool)) error {
	if f.output == outputJSON {
		return printOutput(w, outputJSON, resp, nil)
	}
	return printOutput(w, outputTable, nil, func(w io.Writer) { table(w, f.output == outputWide) })
}

// metricsClient talks to the controller's metrics API over a unix socket or
// HTTP(S).
type metricsClient struct {
	where   string // as the user gave it, for messages
	baseURL string
	http    *http.Client
	socket  bool
}

func newMetricsClient(api string) (*metricsClient, error) {
	c := &metricsClient{where: api, http: &http.Client{Timeout: 30 * time.Second}}
	switch {
	case strings.HasPrefix(api, "http://"), strings.HasPrefix(api, "https://"):
		if _, err := url.Parse(api); err != nil {
			return nil, fmt.Errorf("--api %q: %w", api, err)
		}
		c.baseURL = strings.TrimSuffix(api, "/")
	case strings.HasPrefix(api, "unix:"), strings.HasPrefix(api, "/"), strings.HasPrefix(api, "."):
		path := strings.TrimPrefix(api, "unix:")
		if path == "" {
			return nil, fmt.Errorf("--api %q: no socket path", api)
		}
		c.socket = true
		c.baseURL = "http://skein-controller"
		c.http.Transport = &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}
	default:
		return nil, fmt.Errorf("--api %q: want unix:PATH, a socket path, or an http(s):// URL", api)
	}
	return c, nil
}

func (c *metricsClient) get(ctx context.Context, path string, params url.Values, v any) error {
	return c.do(ctx, http.MethodGet, path, params, nil, v)
}

// do sends one request (body, if any, as YAML) and decodes the JSON answer
// into v.
func (c *metricsClient) do(ctx context.Context, method, path string, params url.Values, body []byte, v any) error {
	resp, err := c.send(ctx, c.http, method, path, params, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the metrics API's answer to %s: %w", path, err)
	}
	if err := json.Unmarshal(answer, v); err != nil {
		return fmt.Errorf("decoding the metrics API's answer to %s: %w", path, err)
	}
	return nil
}

// stream opens a GET whose answer streams until ctx ends (tap): no
// overall timeout, the caller reads and closes the body.
func (c *metricsClient) stream(ctx context.Context, path string, params url.Values) (io.ReadCloser, error) {
	client := *c.http
	client.Timeout = 0
	resp, err := c.send(ctx, &client, http.MethodGet, path, params, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// send sends one request and returns the answer if it is a 200; any other
// status becomes an error with the API's message.
func (c *metricsClient) send(ctx context.Context, client *http.Client, method, path string, params url.Values, body []byte) (*http.Response, error) {
	var reqBody io.Reader
	if body != nil {
		reqBody = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path+"?"+params.Encode(), reqBody)
	if body != nil && err == nil {
		req.Header.Set("Content-Type", "application/yaml")
	}
	if err != nil {
		return nil, fmt.Errorf("metrics API request %s: %w", path, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // the URL is ours, not the user's: say only what failed
		}
		if c.socket {
			return nil, fmt.Errorf("cannot reach the controller's metrics API at %s: is `skein up` running? (%w)", c.where, err)
		}
		return nil, fmt.Errorf("cannot reach the controller's metrics API at %s: %w", c.where, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(answer, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(answer))
	}
	return nil, fmt.Errorf("metrics API at %s: %s (HTTP %d)", c.where, e.Error, resp.StatusCode)
}

// Formatting of table cells. "-" means no data (no requests in the window).

func formatPercent(rate *float64) string {
	if rate == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", *rate*100)
}

func formatRPS(g metricsapi.Golden) string {
	if g.RPS == 0 && g.SuccessRate == nil {
		return "-"
	}
	if g.RPS >= 10 {
		return fmt.Sprintf("%.1f", g.RPS)
	}
	return fmt.Sprintf("%.2f", g.RPS)
}

func formatLatency(ms *float64) string {
	switch {
	case ms == nil:
		return "-"
	case *ms < 10:
		return fmt.Sprintf("%.1fms", *ms)
	default:
		return fmt.Sprintf("%.0fms", *ms)
	}
}

func formatMeshed(meshed, total int) string {
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", meshed, total)
}

// formatReady is ready/total as kubectl's READY column has it; "-" when
// the controller does not know.
func formatReady(ready *int, total int) string {
	if ready == nil {
		return "-"
	}
	return formatMeshed(*ready, total)
}
