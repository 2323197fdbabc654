package h2

import (
	"errors"
	"io"
	"testing"
)

// A spliced body that fails (its stream reset, its connection lost) while
// the sink's writer frames a chunk it peeked: the writer's skip finds
// nothing to drop, and the page is not handed to the pool under it. (The
// skip used to index an empty page list and crash the proxy.)
func TestSplicedBodyFailingUnderThePeekingWriter(t *testing.T) {
	c := &conn{cfg: DefaultConfig()}
	c.q.init()
	st := c.newStream(1)
	b := &st.body
	b.attach(c.newStream(3))
	b.append(make([]byte, 3*pageSize))
	chunk, _, err := b.peek(pageSize)
	if err != nil || len(chunk) != pageSize {
		t.Fatalf("peek: %d bytes, %v", len(chunk), err)
	}
	b.fail(errors.New("reset"))
	b.skip(len(chunk))
	if _, _, err := b.peek(pageSize); err == nil {
		t.Error("a failed body peeked without its error")
	}
}

// A body that had ended is read to its end after its stream fails (a
// response complete before the server reset the stream with NO_ERROR).
func TestEndedBodyIsReadAfterItsStreamFails(t *testing.T) {
	c := &conn{cfg: DefaultConfig()}
	c.q.init()
	st := c.newStream(1)
	b := &st.body
	b.append([]byte("complete"))
	b.end(nil)
	b.fail(errors.New("reset after the response"))
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "complete" {
		t.Errorf("read %q, %v; want the whole body", got, err)
	}
}
