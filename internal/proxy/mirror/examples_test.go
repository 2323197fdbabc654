package mirror

import (
	"fmt"
	"testing"
	"time"
)

func TestExamplesKeepOnePerRoutePerSecondAndTheNewestTen(t *testing.T) {
	e := NewExamples()
	start := time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)
	for i := range 3 * ExamplesPerRoute {
		// two mismatches each half second: only the first of each second is kept
		e.add(Example{Route: "demo/web", Path: fmt.Sprint(i), Time: start.Add(time.Duration(i) * 500 * time.Millisecond)})
	}
	got := e.Recent("demo/web")
	if len(got) != ExamplesPerRoute {
		t.Fatalf("kept %d examples, want %d", len(got), ExamplesPerRoute)
	}
	for i, ex := range got {
		if want := fmt.Sprint(ExamplesPerRoute*3 - 2*(ExamplesPerRoute-i)); ex.Path != want {
			t.Errorf("example %d is request %s, want %s (one per second, the newest, oldest first)", i, ex.Path, want)
		}
	}
	if n := len(e.Unsent()); n != 15 {
		t.Errorf("%d examples to report, want the 15 kept", n)
	}
	if n := len(e.Unsent()); n != 0 {
		t.Errorf("%d examples to report a second time, want none", n)
	}
}

func TestExamplesBoundTheRoutesAndTheQueue(t *testing.T) {
	e := NewExamples()
	now := time.Now()
	for i := range maxExampleRoutes + 10 {
		e.add(Example{Route: fmt.Sprintf("demo/r%d", i), Time: now})
	}
	if e.Recent(fmt.Sprintf("demo/r%d", maxExampleRoutes)) != nil {
		t.Errorf("examples kept for route %d, past the bound of %d routes", maxExampleRoutes, maxExampleRoutes)
	}
	unsent := e.Unsent()
	if len(unsent) != maxUnsent {
		t.Fatalf("%d examples queued, want the bound %d", len(unsent), maxUnsent)
	}
	e.add(Example{Route: "demo/r0", Time: now.Add(time.Hour)})
	e.Requeue(unsent)
	if got := e.Unsent(); len(got) != maxUnsent || got[len(got)-1].Time != now.Add(time.Hour) {
		t.Errorf("after a failed report: %d queued, want %d ending with the newest", len(got), maxUnsent)
	}
}

func TestConstLabelsMayNotReuseMirrorTotalsLabels(t *testing.T) {
	if err := ValidateConstLabels(map[string]string{"result": "x"}); err == nil {
		t.Error("a constant label named result accepted; mirror_total would fail to register")
	}
	if err := ValidateConstLabels(map[string]string{"pod": "web-0"}); err != nil {
		t.Errorf("pod refused: %v", err)
	}
}
