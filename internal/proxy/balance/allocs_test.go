package balance

import (
	"context"
	"testing"
)

// The request path's allocations are a budget: a change that adds one
// fails here, not unnoticed in a benchmark nobody reran.
func TestPickAndDoneAllocateOnlyTheHandle(t *testing.T) {
	b := New(DefaultOptions())
	b.Update(endpoints(testAddrs(100)...))
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		h, err := b.Pick(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h.Sending()
		h.Responded()
		h.Done(false)
	})
	if allocs > 1 {
		t.Errorf("Pick+Sending+Responded+Done allocates %v times, want at most 1 (the Handle)", allocs)
	}
}
