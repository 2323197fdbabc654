package retry

import (
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/routes"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }
func withdrawAll(b *Budget) (n int) {
	for b.Withdraw() {
		n++
	}
	return n
}

func TestBudgetReserveIsMinPerSecondTimesTTL(t *testing.T) {
	clock := newFakeClock()
	b := NewBudget(routes.Budget{}, clock.now) // defaults: 0.2, 10/s, 10s
	if got := withdrawAll(b); got != 100 {
		t.Fatalf("a fresh budget gave %d retries, want the reserve of 10/s × 10s = 100", got)
	}
	clock.add(5 * time.Second)
	if b.Withdraw() {
		t.Fatal("the reserve came back before the TTL")
	}
	clock.add(5 * time.Second)
	if got := withdrawAll(b); got != 100 {
		t.Fatalf("after the TTL the budget gave %d retries, want 100 again", got)
	}
}

func TestBudgetDepositsAreRatioOfARetry(t *testing.T) {
	clock := newFakeClock()
	b := NewBudget(routes.Budget{Ratio: 0.2, MinPerSecond: 1, TTL: time.Second}, clock.now)
	for range 50 {
		b.Deposit()
	}
	if got := withdrawAll(b); got != 50*2/10+1 {
		t.Fatalf("50 requests at 20%% plus a reserve of 1 gave %d retries, want 11", got)
	}
	// Deposits expire with the window: only the reserve is left.
	clock.add(time.Second)
	if got := withdrawAll(b); got != 1 {
		t.Fatalf("after the TTL: %d retries, want the reserve of 1", got)
	}
}

// An always-failing destination at 50 requests per second, each request
// wanting 2 retries: in every TTL-long window, retries stay within
// Ratio × requests in the window + MinPerSecond × TTL.
func TestBudgetBoundsRetriesOfAnAlwaysFailingDestination(t *testing.T) {
	clock := newFakeClock()
	params := routes.Budget{Ratio: 0.2, MinPerSecond: 10, TTL: 10 * time.Second}
	b := NewBudget(params, clock.now)
	const rps, seconds = 50, 60
	type event struct {
		at      time.Duration
		retries int
	}
	var events []event
	start := clock.t
	total := 0
	for i := range rps * seconds {
		clock.t = start.Add(time.Duration(i) * time.Second / rps)
		b.Deposit()
		n := 0
		for range 2 {
			if b.Withdraw() {
				n++
			}
		}
		total += n
		events = append(events, event{at: clock.t.Sub(start), retries: n})
	}
	// Every window [w, w+TTL) of the run.
	for w := time.Duration(0); w+params.TTL <= seconds*time.Second; w += 500 * time.Millisecond {
		requests, retries := 0, 0
		for _, e := range events {
			if e.at >= w && e.at < w+params.TTL {
				requests++
				retries += e.retries
			}
		}
		bound := params.Ratio*float64(requests) + float64(params.MinPerSecond)*params.TTL.Seconds()
		if float64(retries) > bound {
			t.Fatalf("window from %v: %d retries for %d requests, over the budget's %.0f", w, retries, requests, bound)
		}
	}
	// And the budget is used, not refused wholesale: over the minute,
	// about 20% of 3000 plus 10/s.
	want := params.Ratio*rps*seconds + float64(params.MinPerSecond)*seconds
	if float64(total) < 0.8*want || float64(total) > want+float64(params.MinPerSecond)*params.TTL.Seconds() {
		t.Fatalf("%d retries over %ds at %d rps, want about %.0f", total, seconds, rps, want)
	}
	t.Logf("%d requests, %d retries (%.1f%%)", rps*seconds, total, 100*float64(total)/(rps*seconds))
}

func TestBudgetsAreBoundedAndFollowTheirPolicy(t *testing.T) {
	clock := newFakeClock()
	bs := NewBudgets(2, clock.now)
	a := &routes.Policy{Service: "demo/a", Port: 80}
	first := bs.For(a)
	if bs.For(a) != first {
		t.Fatal("the same destination got a new budget")
	}
	if bs.For(&routes.Policy{Service: "demo/a", Port: 81}) == first {
		t.Fatal("another port of the service shares the budget")
	}
	bs.For(&routes.Policy{Service: "demo/b", Port: 80}) // evicts the least recently used: demo/a:80
	if bs.Len() != 2 {
		t.Fatalf("%d budgets kept, want at most 2", bs.Len())
	}
	if bs.For(a) == first {
		t.Fatal("the least recently used budget was kept past the bound")
	}
	changed := *a
	changed.Budget.Ratio = 0.5
	if bs.For(&changed) == bs.For(a) {
		t.Fatal("a changed budget kept its old parameters")
	}
}
