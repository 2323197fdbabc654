package clientpool

import (
	"testing"
)

// fakeEntry has busy requests in flight; CloseIdle reports empty when none.
type fakeEntry struct {
	key    int
	busy   int
	idle   int // idle connections
	closed bool
}

func (e *fakeEntry) CloseIdle() bool { e.idle = 0; return e.busy == 0 }
func (e *fakeEntry) Close()          { e.closed = true; e.busy, e.idle = 0, 0 }

func newTestPool(max int) (*Pool[int, *fakeEntry], map[int]*fakeEntry) {
	made := map[int]*fakeEntry{}
	return New(max, func(k int) *fakeEntry {
		e := &fakeEntry{key: k, idle: 1}
		made[k] = e
		return e
	}), made
}

func TestPoolIsBoundedAndRetiresTheLeastRecentlyUsed(t *testing.T) {
	p, made := newTestPool(4)
	for k := range 4 {
		p.Get(k).busy = 1
	}
	p.Get(0) // 1 is now the least recently used
	p.Get(99)
	if p.Len() != 4 {
		t.Fatalf("pool holds %d entries, want its cap 4", p.Len())
	}
	if p.Get(0) != made[0] {
		t.Error("a recently used entry was dropped")
	}
	old := made[1]
	if e := p.Get(1); e == old {
		t.Error("the least recently used entry was not retired")
	}
	// The retired entry's busy connection is not cut, its idle ones are.
	if old.closed || old.idle != 0 {
		t.Errorf("retired entry: closed=%v idle=%d, want open with no idle connection", old.closed, old.idle)
	}
	for k := range 10_000 {
		p.Get(1000 + k)
		if p.Len() > 4 {
			t.Fatalf("pool holds %d entries, more than its cap", p.Len())
		}
	}
}

func TestSweepDropsEmptyEntriesAndFinishedRetiredOnes(t *testing.T) {
	p, made := newTestPool(2)
	p.Get(1).busy = 1
	p.Get(2)
	p.Get(3) // retires 1, which is busy
	p.Sweep()
	if p.Len() != 0 {
		t.Errorf("after a sweep %d entries are left, want 0 (none busy)", p.Len())
	}
	if len(p.retired) != 1 {
		t.Fatalf("%d retired entries kept, want the busy one", len(p.retired))
	}
	made[1].busy = 0
	p.Sweep()
	if len(p.retired) != 0 {
		t.Errorf("a retired entry with nothing in flight is still kept")
	}
	p.Get(4).busy = 1
	p.Close()
	if !made[4].closed {
		t.Error("Close left an entry open")
	}
}

func TestGettingAPooledEntryDoesNotAllocate(t *testing.T) {
	p, _ := newTestPool(8)
	p.Get(1)
	p.Get(2)
	if n := testing.AllocsPerRun(1000, func() { p.Get(1); p.Get(2) }); n > 0 {
		t.Errorf("Get of a pooled key allocates %v times, want 0", n)
	}
}
