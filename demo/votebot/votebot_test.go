package votebot

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/demo/emoji"
	"github.com/skeinmesh/skein/demo/voting"
)

// TestCycleMix pins the numbers documented on Cycle, which end-to-end tests
// rely on.
func TestCycleMix(t *testing.T) {
	known := map[string]bool{}
	for _, e := range emoji.Catalogue {
		known[e.Name] = true
	}
	paths := map[string]int{}
	soldOut := 0
	for _, request := range Cycle {
		paths[pathOf(request)]++
		choice, isVote := strings.CutPrefix(request, "/api/vote?choice=")
		if !isVote {
			continue
		}
		if !known[choice] {
			t.Errorf("%s: no such emoji", request)
		}
		if choice == voting.SoldOut {
			soldOut++
		}
	}
	if len(Cycle) != 12 || paths["/api/vote"] != 10 || soldOut != 1 || paths["/api/list"] != 1 || paths["/api/leaderboard"] != 1 {
		t.Errorf("cycle of %d requests: %v with %d votes for %s; want 12: 10 votes (1 for %[4]s), 1 list, 1 leaderboard",
			len(Cycle), paths, soldOut, voting.SoldOut)
	}
	if Cycle[len(Cycle)-1] != "/api/vote?choice="+voting.SoldOut {
		t.Errorf("the failing vote is not last in the cycle; the documented floor(N/12) no longer holds")
	}
}

// TestRunSendsTheMix runs the bot against a web stand-in that fails sold-out
// votes as the real one does.
func TestRunSendsTheMix(t *testing.T) {
	var mu sync.Mutex
	received := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received[r.URL.RequestURI()]++
		mu.Unlock()
		if r.URL.Query().Get("choice") == voting.SoldOut {
			http.Error(w, "sold out", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()

	cfg := Config{Target: srv.Listener.Addr().String(), Rate: 1000, Requests: 120, ReportInterval: time.Minute}
	totals, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}

	want := Totals{
		"/api/list":        {Requests: 10},
		"/api/leaderboard": {Requests: 10},
		"/api/vote":        {Requests: 100, Failures: 10},
	}
	if len(totals) != len(want) {
		t.Errorf("totals = %v, want %v", totals, want)
	}
	for path, c := range want {
		if totals[path] != c {
			t.Errorf("totals[%s] = %+v, want %+v", path, totals[path], c)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, request := range []string{"/api/vote?choice=taco", "/api/vote?choice=doughnut", "/api/list"} {
		wantN := 0
		for _, r := range Cycle {
			if r == request {
				wantN += 10
			}
		}
		if received[request] != wantN {
			t.Errorf("server received %s %d times, want %d", request, received[request], wantN)
		}
	}
}

// TestRunStopsWithContext checks that a bot without a request limit stops
// when its context ends, and does not count the requests it aborted as the
// target's failures.
func TestRunStopsWithContext(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done() // never answer: every request is in flight at cancel
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Totals)
	go func() {
		totals, err := Run(ctx, Config{Target: srv.Listener.Addr().String(), Rate: 100, ReportInterval: time.Minute})
		if err != nil {
			t.Error(err)
		}
		done <- totals
	}()
	<-arrived
	cancel()
	if totals := <-done; len(totals) != 0 {
		t.Errorf("totals = %v, want nothing counted", totals)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	if err := good.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"target":          func(c *Config) { c.Target = "web.demo" },
		"rate":            func(c *Config) { c.Rate = 0 },
		"requests":        func(c *Config) { c.Requests = -1 },
		"report interval": func(c *Config) { c.ReportInterval = 0 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), name) {
			t.Errorf("bad %s: err = %v, want one naming %q", name, err, name)
		}
	}
}
