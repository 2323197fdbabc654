package h2

import (
	"bytes"
	"io"
	"testing"
)

// trickle hands out at most limit bytes per Read, as a quiet peer does.
type trickle struct {
	r     io.Reader
	limit int
}

func (t *trickle) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), t.limit)]) }

// An idle connection whose peer is quiet reads into its own small buffer
// and holds no ReadBufferSize one; a busy one, or one whose peer fills
// what it reads, reads into a pooled full-size buffer, which goes back
// once the connection is idle and quiet again. The bytes come out the same.
func TestConnReaderHoldsItsBufferOnlyWhileBusy(t *testing.T) {
	data := make([]byte, 4*defaultWriteBufferSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	busy := false
	src := &trickle{r: bytes.NewReader(data), limit: 100}
	cr := newConnReader(src, defaultWriteBufferSize, func() bool { return busy })
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
		t.Fatal("an idle connection with a quiet peer took a full-size buffer")
	}
	src.limit = len(data) // the peer floods: the small buffer fills
	read(cr.Buffered())
	read(idleReadSize)
	read(10)
	if cr.big == nil {
		t.Fatal("a connection whose small buffer filled did not take a full-size one")
	}
	read(cr.Buffered())
	busy = true
	read(100)
	if cr.big == nil || cr.Buffered() != defaultWriteBufferSize-100 {
		t.Fatalf("a busy connection read %d bytes ahead (big buffer %v), want a full buffer", cr.Buffered()+100, cr.big != nil)
	}
	busy = false
	src.limit = 1000
	read(cr.Buffered()) // what the big buffer holds: no new read
	read(10)            // the last read was full: the big buffer again, 1000 bytes
	read(cr.Buffered())
	read(10) // a quiet peer and no stream: the small buffer
	if cr.big != nil {
		t.Fatal("an idle connection with a quiet peer kept its full-size buffer")
	}
	src.limit = len(data)
	read(len(data) - len(got))
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes read differ from the bytes sent")
	}
}
