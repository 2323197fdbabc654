package h2

import "testing"

// A flood of SETTINGS, PINGs and WINDOW_UPDATEs whose answers the writer
// has not taken yet costs the queue no item each: the SETTINGS are merged
// and counted, the increments summed per stream, and past the limit the
// peer is refused.
func TestControlFloodIsCoalesced(t *testing.T) {
	const limit = 3000
	c := &conn{cfg: Config{MaxQueuedControlFrames: limit}.withDefaults()}
	c.q.init()
	st := &stream{id: 1}
	provoked := []func(i int) error{
		func(i int) error {
			return c.provoke(func(ctl *control) {
				ctl.settingsAcks++
				ctl.peer.merge(peerSettings{hasWindow: true, window: uint32(i)})
			})
		},
		func(i int) error { return c.provoke(func(ctl *control) { ctl.connIncr++ }) },
		func(i int) error {
			return c.provoke(func(ctl *control) { ctl.addWindow(st, 1) })
		},
	}
	for i := range limit {
		if err := provoked[i%3](i); err != nil {
			t.Fatalf("answer %d refused: %v", i, err)
		}
	}
	if err := c.provoke(func(ctl *control) { ctl.pings = append(ctl.pings, [8]byte{}) }); err == nil {
		t.Fatalf("answer %d past the limit of %d accepted", limit+1, limit)
	}
	var ctl control
	items := c.q.take(&ctl)
	if len(items) != 0 || cap(c.q.items) != 0 {
		t.Errorf("the queue holds %d items (capacity %d), want none", len(items), cap(c.q.items))
	}
	if ctl.settingsAcks != limit/3 || ctl.peer.window != limit-3 || ctl.connIncr != limit/3 {
		t.Errorf("control: %d SETTINGS ACKs owed, window %d, connection increment %d; want %d, %d, %d",
			ctl.settingsAcks, ctl.peer.window, ctl.connIncr, limit/3, limit-3, limit/3)
	}
	if len(ctl.windows) != 1 || ctl.windows[0].incr != limit/3 || st.windowSlot != 0 {
		t.Errorf("stream increments: %+v (slot %d), want one entry of %d", ctl.windows, st.windowSlot, limit/3)
	}
	if err := c.provoke(func(ctl *control) { ctl.pings = append(ctl.pings, [8]byte{1}) }); err != nil {
		t.Errorf("after the writer took the answers, a new one was refused: %v", err)
	}
}
