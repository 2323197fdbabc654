// Package votebot is the demo's traffic generator: it calls the web front
// end at a fixed rate with a fixed, known mix of requests (see Cycle), so
// that the share of failures the mesh reports can be checked against what
// was sent. It logs a summary of what it sent at a fixed interval.
package votebot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults: web's service name in the local mesh, and the demo's pace.
const (
	DefaultTarget         = "web.demo.svc.cluster.local:8080"
	DefaultRate           = 10
	DefaultReportInterval = 10 * time.Second
)

// requestTimeout bounds each request, so a stuck back end cannot pile up
// more than rate × timeout requests in flight.
const requestTimeout = 5 * time.Second

// Config says what the bot calls and how fast.
type Config struct {
	// Target is web's host:port.
	Target string
	// Rate is requests per second.
	Rate float64
	// Requests stops the bot after that many requests; 0 runs until the
	// context ends.
	Requests int
	// ReportInterval is how often a summary is logged.
	ReportInterval time.Duration
}

// DefaultConfig is the configuration of the demo in the local mesh.
func DefaultConfig() Config {
	return Config{Target: DefaultTarget, Rate: DefaultRate, ReportInterval: DefaultReportInterval}
}

// Validate names the first field that is out of range.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return fmt.Errorf("target %q: want host:port: %w", c.Target, err)
	}
	if c.Rate <= 0 {
		return fmt.Errorf("rate %v: must be more than 0", c.Rate)
	}
	if c.Requests < 0 {
		return fmt.Errorf("requests %d: must not be negative", c.Requests)
	}
	if c.ReportInterval <= 0 {
		return fmt.Errorf("report interval %v: must be more than 0", c.ReportInterval)
	}
	return nil
}

// Run sends requests until ctx ends or cfg.Requests have been sent, waits
// for the ones in flight and returns what it counted. Requests cut short
// because ctx ended are not counted.
func Run(ctx context.Context, cfg Config) (Totals, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &bot{
		base:   "http://" + cfg.Target,
		client: newClient(),
		total:  Totals{},
		window: Totals{},
		since:  time.Now(),
	}
	defer b.client.CloseIdleConnections()
	slog.Info("sending traffic", "target", cfg.Target, "rate", cfg.Rate, "requests", cfg.Requests)

	send := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer send.Stop()
	report := time.NewTicker(cfg.ReportInterval)
	defer report.Stop()
	var inFlight sync.WaitGroup
	for sent := 0; cfg.Requests == 0 || sent < cfg.Requests; {
		select {
		case <-ctx.Done():
			inFlight.Wait()
			b.report()
			return b.totals(), nil
		case <-report.C:
			b.report()
		case <-send.C:
			request := Request(sent)
			sent++
			inFlight.Go(func() { b.send(ctx, request) })
		}
	}
	inFlight.Wait()
	b.report()
	return b.totals(), nil
}

func newClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: transport, Timeout: requestTimeout}
}

type bot struct {
	base   string
	client *http.Client

	mu     sync.Mutex
	total  Totals
	window Totals    // since the last report
	since  time.Time // of the window
}

// send makes one request and counts it: a failure is a transport error or
// any status but 2xx.
func (b *bot) send(ctx context.Context, request string) {
	failed, err := b.get(ctx, request)
	if err != nil && ctx.Err() != nil {
		return // shutting down: not the target's fault
	}
	if err != nil {
		slog.Debug("request failed", "request", request, "err", err)
	}
	path := pathOf(request)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total.add(path, failed)
	b.window.add(path, failed)
}

func (b *bot) get(ctx context.Context, request string) (failed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+request, nil)
	if err != nil {
		return true, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	// Read the body to the end so the connection is reused.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return true, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return true, errors.New(resp.Status)
	}
	return false, nil
}

// report logs the counts since the last report and starts a new window.
func (b *bot) report() {
	b.mu.Lock()
	window, since := b.window, b.since
	b.window, b.since = Totals{}, time.Now()
	b.mu.Unlock()
	requests, failures := window.Sum()
	attrs := []any{"window", time.Since(since).Round(time.Millisecond), "requests", requests, "failures", failures}
	for _, path := range window.Paths() {
		c := window[path]
		attrs = append(attrs, slog.Group(path, "requests", c.Requests, "failures", c.Failures))
	}
	slog.Info("traffic sent", attrs...)
}

func (b *bot) totals() Totals {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total.clone()
}
