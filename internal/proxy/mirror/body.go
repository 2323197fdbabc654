package mirror

import (
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"sync"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// errBodyNotRead says a body ended without being read to its end (the
// client went away, the upstream failed, or nobody read it).
var errBodyNotRead = errors.New("body not read to the end")

// teeBody is the primary's request body, read by the primary's path as
// usual, keeping a copy of up to MaxBody bytes for the mirrors. It does
// not implement stack.Unwrapper: it must see every byte.
type teeBody struct {
	stack.Body
	buf  []byte
	over bool // the body grew past MaxBody: the copy was dropped

	once     sync.Once
	done     chan struct{} // closed once the body ended
	ok       bool          // ended with io.EOF, within MaxBody
	trailers stack.Header
}

func newTeeBody(b stack.Body) *teeBody {
	return &teeBody{Body: b, done: make(chan struct{})}
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if n > 0 && !b.over {
		if len(b.buf)+n > MaxBody {
			b.over, b.buf = true, nil
			b.end(false, nil) // the mirrors need not wait for the rest
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	switch {
	case err == io.EOF:
		b.end(!b.over, b.Body.Trailers())
	case err != nil:
		b.end(false, nil)
	}
	return n, err
}

func (b *teeBody) Close() error {
	b.end(false, nil) // does nothing after the body ended
	return b.Body.Close()
}

func (b *teeBody) end(ok bool, trailers stack.Header) {
	b.once.Do(func() {
		b.ok, b.trailers = ok, trailers.Clone()
		close(b.done)
	})
}

// copy returns a body of the bytes read, for one mirror, once the
// primary's body ended; ok is false when there is nothing to send (the
// body was cut short or too long).
func (b *teeBody) copy() (stack.Body, bool) {
	if !b.ok {
		return nil, false
	}
	return stack.BytesBody(b.buf, b.trailers.Clone()), true
}

// answer is what a response is compared by.
type answer struct {
	status   int
	header   stack.Header // a copy, taken before layers above change it
	trailers stack.Header
	sum      [sha256.Size]byte
	longer   bool // the body went on past MaxBody (not hashed)
	prefix   []byte
	err      error
}

// field is the value of a compared field: from the headers, else from
// the trailers (gRPC's status comes in either).
func (a *answer) field(name string) string {
	if v := a.header.Get(name); v != "" {
		return v
	}
	return a.trailers.Get(name)
}

// answerBuilder hashes a response body as it is read.
type answerBuilder struct {
	a      answer
	hash   hash.Hash
	hashed int
}

func newAnswerBuilder(status int, h stack.Header) *answerBuilder {
	return &answerBuilder{a: answer{status: status, header: h.Clone()}, hash: sha256.New()}
}

func (b *answerBuilder) write(p []byte) {
	if room := PrefixLen - len(b.a.prefix); room > 0 {
		b.a.prefix = append(b.a.prefix, p[:min(room, len(p))]...)
	}
	if room := MaxBody - b.hashed; room > 0 {
		n := min(room, len(p))
		b.hash.Write(p[:n])
		b.hashed += n
		p = p[n:]
	}
	if len(p) > 0 {
		b.a.longer = true
	}
}

// finish completes the answer at the body's end.
func (b *answerBuilder) finish(trailers stack.Header) answer {
	b.a.trailers = trailers.Clone()
	copy(b.a.sum[:], b.hash.Sum(nil))
	return b.a
}

// primaryBody is the primary's response body, hashed as the client reads
// it, for mirrored requests only. It does not implement stack.Unwrapper:
// it must see every byte.
type primaryBody struct {
	stack.Body
	b      *answerBuilder
	answer *pending
}

func (p *primaryBody) Read(buf []byte) (int, error) {
	n, err := p.Body.Read(buf)
	if n > 0 {
		p.b.write(buf[:n])
	}
	switch {
	case err == io.EOF:
		p.answer.set(p.b.finish(p.Body.Trailers()))
	case err != nil:
		p.answer.set(answer{err: err})
	}
	return n, err
}

func (p *primaryBody) Close() error {
	p.answer.set(answer{err: errBodyNotRead}) // does nothing after the end
	return p.Body.Close()
}

// pending is the primary's answer, set once, awaited by the mirrors.
type pending struct {
	once sync.Once
	done chan struct{}
	a    answer
}

func newPending() *pending { return &pending{done: make(chan struct{})} }

func (p *pending) set(a answer) {
	p.once.Do(func() {
		p.a = a
		close(p.done)
	})
}
