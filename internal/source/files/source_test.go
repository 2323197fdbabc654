package files

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinmesh/skein/internal/model"
)

// logRecords is a slog.Handler that hands every record to a channel, so a
// test can wait for "the reload was rejected" instead of sleeping.
type logRecords chan slog.Record

func (l logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l logRecords) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r:
	default:
	}
	return nil
}
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logRecords) WithGroup(string) slog.Handler      { return l }

// waitLog waits for a record whose message contains msg and returns its
// attributes as text.
func waitLog(t *testing.T, logs logRecords, msg string) string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-logs:
			if !strings.Contains(r.Message, msg) {
				continue
			}
			var b strings.Builder
			r.Attrs(func(a slog.Attr) bool { b.WriteString(a.String() + " "); return true })
			return b.String()
		case <-timeout:
			t.Fatalf("no log record %q", msg)
			return ""
		}
	}
}

func next(t *testing.T, sets <-chan model.EndpointSet) []string {
	t.Helper()
	select {
	case s := <-sets:
		var out []string
		for _, e := range s.Endpoints {
			out = append(out, e.Addr.String())
		}
		return out
	case <-time.After(5 * time.Second):
		t.Fatal("no endpoint set received")
		return nil
	}
}

// startSource runs a source on dir until the test ends.
func startSource(t *testing.T, dir string) (*Source, *model.Model, logRecords) {
	t.Helper()
	m := model.New()
	logs := make(logRecords, 100)
	s, err := New(dir, m, slog.New(logs), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Loaded():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return s, m, logs
}

func watch(t *testing.T, m *model.Model, dst string) <-chan model.EndpointSet {
	t.Helper()
	sets := make(chan model.EndpointSet, 16)
	if err := m.Watch(t.Context(), dst, func(s model.EndpointSet) { sets <- s }); err != nil {
		t.Fatal(err)
	}
	return sets
}

func TestSourceFollowsTheDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "web.yaml", webManifests)
	start := nowSeconds()
	s, m, logs := startSource(t, dir)
	lastApplied := testutil.ToFloat64(s.lastOKTime)
	if ok := testutil.ToFloat64(s.lastOK); ok != 1 || lastApplied < start {
		t.Errorf("after the first load: successful %v, applied at %v; want 1, at or after %v", ok, lastApplied, start)
	}
	const dst = "web.demo.svc.cluster.local:80"
	sets := watch(t, m, dst)
	if got := next(t, sets); !slices.Equal(got, []string{"10.0.0.1:8080", "10.0.0.2:8080"}) {
		t.Fatalf("initial endpoints %v", got)
	}

	writeFile(t, dir, "web.yaml", strings.Replace(webManifests, "[10.0.0.1, 10.0.0.2]", "[10.0.0.1, 10.0.0.2, 10.0.0.3]", 1))
	if got := next(t, sets); !slices.Equal(got, []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}) {
		t.Fatalf("after adding an address: %v", got)
	}
	writeFile(t, dir, "web.yaml", strings.Replace(webManifests, "[10.0.0.1, 10.0.0.2]", "[10.0.0.2]", 1))
	if got := next(t, sets); !slices.Equal(got, []string{"10.0.0.2:8080"}) {
		t.Fatalf("after removing addresses: %v", got)
	}

	// A broken edit is rejected as a whole, even the valid part of it.
	writeFile(t, dir, "web.yaml", strings.Replace(webManifests, "[10.0.0.1, 10.0.0.2]", "[10.0.0.5, 10.0.0.999]", 1))
	attrs := waitLog(t, logs, "keeping the last good state")
	for _, want := range []string{"web.yaml", "Workload demo/web", "spec.addresses[1]"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("logged error %q does not mention %q", attrs, want)
		}
	}
	if got := next(t, watch(t, m, dst)); !slices.Equal(got, []string{"10.0.0.2:8080"}) {
		t.Fatalf("after an invalid edit: %v, want the last good state", got)
	}
	appliedBefore := testutil.ToFloat64(s.lastOKTime)
	// The source sets the gauge after it logs the refusal: poll, do not
	// time it.
	waitGauges(t, "after an invalid edit", func() (bool, string) {
		ok := testutil.ToFloat64(s.lastOK)
		return ok == 0, fmt.Sprintf("successful %v, want 0", ok)
	})
	select {
	case s := <-sets:
		t.Fatalf("an invalid edit reached the watcher: %+v", s)
	default:
	}

	writeFile(t, dir, "vm.yaml", "apiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: vm, namespace: demo, labels: {app: web}}\nspec: {ports: [{name: http, containerPort: 9000}], addresses: [10.0.1.1]}\n")
	writeFile(t, dir, "web.yaml", webManifests)
	if got := next(t, sets); !slices.Equal(got, []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.1.1:9000"}) {
		t.Fatalf("after fixing the directory and adding a file: %v", got)
	}
	// The source sets the gauges after the model has the new state, which
	// the watcher may have handed over already.
	waitGauges(t, "after fixing the directory", func() (bool, string) {
		ok, at := testutil.ToFloat64(s.lastOK), testutil.ToFloat64(s.lastOKTime)
		return ok == 1 && at > appliedBefore, fmt.Sprintf("successful %v, applied at %v; want 1, after %v", ok, at, appliedBefore)
	})
}

// waitGauges polls cond for up to 10 s and fails the test with its last
// report if it never holds.
func waitGauges(t *testing.T, when string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		done, report := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %s", when, report)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func TestRunRejectsAnInvalidDirectoryAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
	s, _ := New(dir, model.New(), slog.New(slog.DiscardHandler), nil)
	err := s.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("Run() = %v, want an error naming bad.yaml", err)
	}
	select {
	case <-s.Loaded():
		t.Fatal("Loaded() closed after a failed load")
	default:
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	s, _ := New(t.TempDir(), model.New(), slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Loaded()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}
