package h2

import (
	"bytes"
	"io"
	"testing"
)

// An idle connection reads into its own small buffer and holds no
// ReadBufferSize one; a busy one reads into a pooled full-size buffer,
// which it gives back once idle again. The bytes come out the same.
func TestConnReaderHoldsItsBufferOnlyWhileBusy(t *testing.T) {
	data := make([]byte, 3*defaultWriteBufferSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	busy := false
	cr := newConnReader(bytes.NewReader(data), defaultWriteBufferSize, func() bool { return busy })
	got := make([]byte, 0, len(data))
	read := func(n int) {
		t.Helper()
		p := make([]byte, n)
		if _, err := io.ReadFull(cr, p); err != nil {
			t.Fatal(err)
		}
		got = append(got, p...)
	}
	read(2 * idleReadSize)
	if cr.big != nil {
		t.Fatal("an idle connection took a full-size buffer")
	}
	if cr.Buffered() != 0 {
		t.Fatalf("an idle read buffered %d bytes, want the small buffer's %d consumed", cr.Buffered(), idleReadSize)
	}
	busy = true
	read(100)
	if cr.big == nil || cr.Buffered() != defaultWriteBufferSize-100 {
		t.Fatalf("a busy connection read %d bytes ahead (big buffer %v), want a full buffer", cr.Buffered()+100, cr.big != nil)
	}
	busy = false
	read(defaultWriteBufferSize - 100) // what the big buffer holds: no new read
	read(10)
	if cr.big != nil {
		t.Fatal("an idle connection kept its full-size buffer")
	}
	read(len(data) - len(got))
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes read differ from the bytes sent")
	}
}
