package retry

import (
	"container/list"
	"sync"
	"time"

	"github.com/skeinmesh/skein/internal/routes"
)

// Budget defaults, as Linkerd's ServiceProfile retry budget and Finagle's
// RetryBudget have them.
const (
	DefaultBudgetRatio        = 0.2
	DefaultBudgetMinPerSecond = 10
	DefaultBudgetTTL          = 10 * time.Second
)

// budgetSlots is how many slices the TTL window is cut into: a deposit or
// withdrawal expires between TTL×9/10 and TTL after it was made.
const budgetSlots = 10

// milli is one retry's worth of tokens: deposits are Ratio×milli each.
const milli = 1000

// Budget is one destination's retry budget, Finagle's RetryBudget
// (TokenRetryBudget over a leaky bucket), as Linkerd and tower have it:
//
//   - every request that may be retried deposits Ratio of a retry;
//   - every retry withdraws one retry, and is only made when the balance
//     holds one;
//   - deposits and withdrawals expire TTL after they were made (the window
//     slides in steps of TTL/10);
//   - a reserve of MinPerSecond×TTL retries is always there on top, so a
//     destination with little traffic can still retry.
//
// So within any TTL-long window, retries ≤ Ratio × requests in that window
// + MinPerSecond × TTL. It is safe for concurrent use.
type Budget struct {
	params  routes.Budget
	deposit int64 // tokens per request: Ratio × milli
	reserve int64 // MinPerSecond × TTL seconds × milli
	slot    time.Duration
	now     func() time.Time

	mu      sync.Mutex
	slots   [budgetSlots]int64
	current int       // index of the slot that began at currentStart
	start   time.Time // when slots[current] began
}

// withDefaults fills in zero fields of b with the defaults.
func withDefaults(b routes.Budget) routes.Budget {
	if b.Ratio <= 0 {
		b.Ratio = DefaultBudgetRatio
	}
	if b.MinPerSecond <= 0 {
		b.MinPerSecond = DefaultBudgetMinPerSecond
	}
	if b.TTL <= 0 {
		b.TTL = DefaultBudgetTTL
	}
	return b
}

// NewBudget makes a budget with params (zero fields: the defaults) on the
// clock now (time.Now when nil).
func NewBudget(params routes.Budget, now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	p := withDefaults(params)
	ratio := min(p.Ratio, 1000) // as Finagle caps it
	b := &Budget{
		params:  params,
		deposit: int64(ratio * milli),
		reserve: int64(float64(p.MinPerSecond) * p.TTL.Seconds() * milli),
		slot:    p.TTL / budgetSlots,
		now:     now,
	}
	if b.slot <= 0 {
		b.slot = time.Nanosecond
	}
	b.start = now()
	return b
}

// Deposit records one request that may be retried.
func (b *Budget) Deposit() {
	b.mu.Lock()
	b.advance()
	b.slots[b.current] += b.deposit
	b.mu.Unlock()
}

// Withdraw takes one retry from the budget; false means there is none.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	var sum int64
	for _, s := range b.slots {
		sum += s
	}
	if sum+b.reserve < milli {
		return false
	}
	b.slots[b.current] -= milli
	return true
}

// advance moves the window to now, emptying the slots that expired.
func (b *Budget) advance() {
	elapsed := b.now().Sub(b.start)
	if elapsed < b.slot {
		return
	}
	steps := int64(elapsed / b.slot)
	b.start = b.start.Add(time.Duration(steps) * b.slot)
	for i := int64(0); i < min(steps, budgetSlots); i++ {
		b.current = (b.current + 1) % budgetSlots
		b.slots[b.current] = 0
	}
}

// Budgets holds the retry budget of each destination, at most max of them
// (the least recently used goes first). Keys are destinations of the
// controller's policies, never anything a client sends.
type Budgets struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List // of *budgetEntry, most recently used first
	byKey map[budgetKey]*list.Element
}

type budgetKey struct {
	service string
	port    uint16
}

type budgetEntry struct {
	key    budgetKey
	budget *Budget
}

// DefaultMaxBudgets bounds how many destinations keep a budget.
const DefaultMaxBudgets = 1024

// NewBudgets makes a set of at most max budgets (DefaultMaxBudgets when
// max ≤ 0) on the clock now (time.Now when nil).
func NewBudgets(max int, now func() time.Time) *Budgets {
	if max <= 0 {
		max = DefaultMaxBudgets
	}
	return &Budgets{max: max, now: now, order: list.New(), byKey: make(map[budgetKey]*list.Element)}
}

// For returns the budget of p's destination, made afresh when p's budget
// parameters changed.
func (bs *Budgets) For(p *routes.Policy) *Budget {
	k := budgetKey{service: p.Service, port: p.Port}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if el, ok := bs.byKey[k]; ok {
		e := el.Value.(*budgetEntry)
		if e.budget.params == p.Budget {
			bs.order.MoveToFront(el)
			return e.budget
		}
		e.budget = NewBudget(p.Budget, bs.now)
		bs.order.MoveToFront(el)
		return e.budget
	}
	if bs.order.Len() >= bs.max {
		oldest := bs.order.Back()
		bs.order.Remove(oldest)
		delete(bs.byKey, oldest.Value.(*budgetEntry).key)
	}
	e := &budgetEntry{key: k, budget: NewBudget(p.Budget, bs.now)}
	bs.byKey[k] = bs.order.PushFront(e)
	return e.budget
}

// Len is how many destinations have a budget now.
func (bs *Budgets) Len() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.order.Len()
}
