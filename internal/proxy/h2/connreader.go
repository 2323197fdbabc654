package h2

import "io"

// connReader is the reader goroutine's buffered reader. A connection with
// no open stream waits for its next bytes in a small buffer of its own;
// the full-size buffer comes from a pool once it has streams and goes back
// when it is idle again, so idle connections (held open by the thousand,
// or slowloris ones) do not hold ReadBufferSize each.
type connReader struct {
	r     io.Reader
	size  int
	busy  func() bool // whether the connection has streams
	big   *[]byte     // pooled, while busy
	cur   []byte      // the buffer the last read filled: small or *big
	start int
	end   int
	full  bool // the last read filled its buffer: more is likely waiting
	small [idleReadSize]byte
}

// idleReadSize is what an idle connection reads at a time: a request's
// first frames, or a few control frames.
const idleReadSize = 512

func newConnReader(r io.Reader, size int, busy func() bool) *connReader {
	return &connReader{r: r, size: size, busy: busy}
}

// Buffered is the number of bytes read and not yet consumed.
func (cr *connReader) Buffered() int { return cr.end - cr.start }

// peek returns the next n buffered bytes, or nil when fewer are buffered.
func (cr *connReader) peek(n int) []byte {
	if cr.Buffered() < n {
		return nil
	}
	return cr.cur[cr.start : cr.start+n]
}

func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cr.start == cr.end {
		if len(p) >= cr.size {
			return cr.r.Read(p) // as large as the buffer: read straight in
		}
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, cr.cur[cr.start:cr.end])
	cr.start += n
	return n, nil
}

// fill reads into an empty buffer: the small one when the connection is
// idle (giving the big one back), else the big one. A connection whose
// last read filled its buffer is not idle: the peer is sending (a flood
// of frames is read in full buffers, not in small ones).
func (cr *connReader) fill() error {
	if cr.full || cr.busy() {
		if cr.big == nil {
			cr.big = getConnBuf(cr.size)
		}
		cr.cur = *cr.big
	} else {
		cr.release()
		cr.cur = cr.small[:]
	}
	cr.start, cr.end = 0, 0
	n, err := cr.r.Read(cr.cur)
	cr.end = n
	cr.full = n == len(cr.cur)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release gives the big buffer back; the caller's buffered bytes must not
// be in it.
func (cr *connReader) release() {
	if cr.big != nil {
		putConnBuf(cr.big, cr.size)
		cr.big = nil
	}
}
