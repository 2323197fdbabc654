package h1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// bodyReader reads one message body off a connection: Content-Length
// delimited, chunked (with trailers), or until the connection closes.
type bodyReader struct {
	br   *bufio.Reader
	conn net.Conn
	// timeout cuts a body that sends nothing for this long; 0: none.
	timeout time.Duration
	mode    bodyMode
	// left is what is left of the body (modeLength) or of the current
	// chunk (modeChunked).
	left       int64
	needCRLF   bool // chunked: the CRLF after a chunk's data is due
	maxTrailer int
	trailers   stack.Header
	err        error       // sticky; io.EOF once the body has ended
	done       atomic.Bool // err is set: Close may read it from another goroutine
	// owner is told about the body's first read, its end and its
	// abandonment; nil for none.
	owner     bodyOwner
	expect100 bool // tell the owner about the first read
	closed    atomic.Bool
}

// bodyOwner is the connection a body is read from.
type bodyOwner interface {
	// bodyFirstRead runs before the first read of a body the client waits
	// to send (100-continue).
	bodyFirstRead()
	// bodyEnded runs once when the body ends, with io.EOF or the error.
	bodyEnded(err error)
	// bodyAbandoned runs on a Close before the end.
	bodyAbandoned()
}

type bodyMode uint8

const (
	modeLength bodyMode = iota
	modeChunked
	modeUntilClose
)

// errBodyClosed is what Read returns after Close.
var errBodyClosed = errors.New("body closed")

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed.Load() {
		return 0, errBodyClosed
	}
	if b.expect100 {
		b.expect100 = false
		b.owner.bodyFirstRead()
	}
	var n int
	var err error
	switch b.mode {
	case modeLength:
		n, err = b.readLength(p)
	case modeChunked:
		n, err = b.readChunked(p)
	default:
		n, err = b.fill(p)
		if err == io.EOF {
			b.end(io.EOF)
		}
	}
	if err != nil && b.err == nil {
		b.end(err)
	}
	return n, err
}

func (b *bodyReader) end(err error) {
	b.err = err
	b.done.Store(true)
	if b.owner != nil {
		b.owner.bodyEnded(err)
	}
}

// fill reads what is buffered or, if nothing is, once from the
// connection, under the body timeout.
func (b *bodyReader) fill(p []byte) (int, error) {
	if b.br.Buffered() == 0 && b.timeout > 0 {
		_ = b.conn.SetReadDeadline(time.Now().Add(b.timeout))
	}
	return b.br.Read(p)
}

func (b *bodyReader) readLength(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.fill(p)
	b.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && b.left == 0 {
		err = io.EOF
	}
	return n, err
}

// readChunked reads chunk data into p. Once it has some, it goes on into
// the next chunks only while they are already buffered, so that a client
// sending many small chunks at once costs one read here and one write on
// the other side, never a wait.
func (b *bodyReader) readChunked(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if b.left == 0 {
			if n > 0 && !b.nextChunkBuffered() {
				return n, nil
			}
			if err := b.nextChunk(); err != nil {
				return n, err
			}
		}
		q := p[n:]
		if int64(len(q)) > b.left {
			q = q[:b.left]
		}
		if n > 0 {
			if len(q) > b.br.Buffered() {
				q = q[:b.br.Buffered()]
			}
			if len(q) == 0 {
				return n, nil
			}
		}
		m, err := b.fill(q)
		n += m
		b.left -= int64(m)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// nextChunk reads the CRLF ending the last chunk's data and the next
// chunk's size line; at the last chunk, the trailers, and returns io.EOF.
func (b *bodyReader) nextChunk() error {
	if b.needCRLF {
		if err := b.readCRLF(); err != nil {
			return err
		}
		b.needCRLF = false
	}
	size, err := b.readChunkSize()
	if err != nil {
		return err
	}
	if size == 0 {
		return b.readTrailers()
	}
	b.left, b.needCRLF = size, true
	return nil
}

// nextChunkBuffered reports whether the next chunk's size line (and the
// CRLF before it) is buffered and announces data, not the last chunk.
func (b *bodyReader) nextChunkBuffered() bool {
	buf, _ := b.br.Peek(b.br.Buffered())
	if b.needCRLF {
		if len(buf) < 2 || buf[0] != '\r' || buf[1] != '\n' {
			return false
		}
		buf = buf[2:]
	}
	for i, c := range buf {
		if c == '\n' {
			size, ok := parseChunkSize(buf[:max(i-1, 0)])
			return ok && i > 0 && buf[i-1] == '\r' && size > 0
		}
	}
	return false
}

var errBadChunk = badMessage("malformed chunked encoding")

func (b *bodyReader) readLine() ([]byte, error) {
	if b.br.Buffered() == 0 && b.timeout > 0 {
		_ = b.conn.SetReadDeadline(time.Now().Add(b.timeout))
	}
	line, err := b.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return nil, errBadChunk
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	case len(line) < 2 || line[len(line)-2] != '\r':
		return nil, errBadChunk
	}
	return line[:len(line)-2], nil
}

func (b *bodyReader) readCRLF() error {
	line, err := b.readLine()
	if err == nil && len(line) != 0 {
		err = errBadChunk
	}
	return err
}

func (b *bodyReader) readChunkSize() (int64, error) {
	line, err := b.readLine()
	if err != nil {
		return 0, err
	}
	size, ok := parseChunkSize(line)
	if !ok {
		return 0, errBadChunk
	}
	return size, nil
}

// parseChunkSize parses a chunk-size line without its CRLF: hex digits,
// then nothing or chunk extensions (ignored).
func parseChunkSize(line []byte) (int64, bool) {
	var size int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, false
		}
		size = size<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	return size, true
}

// checkBufferedChunk validates the first chunk-size line if it is already
// buffered, so that a malformed chunked request is refused before it
// reaches the Handler; a line not yet here is checked when read.
func checkBufferedChunk(br *bufio.Reader) error {
	buf, _ := br.Peek(br.Buffered())
	for i, c := range buf {
		if c == '\n' {
			if i == 0 || buf[i-1] != '\r' {
				return errBadChunk
			}
			if _, ok := parseChunkSize(buf[:i-1]); !ok {
				return errBadChunk
			}
			return nil
		}
	}
	return nil
}

// readTrailers reads the trailer block after the last chunk.
func (b *bodyReader) readTrailers() error {
	var block []byte
	for {
		line, err := b.readLine()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		if len(block)+len(line)+2 > b.maxTrailer {
			return errHeadTooLarge
		}
		block = append(append(block, line...), '\r', '\n')
	}
	if len(block) == 0 {
		return io.EOF
	}
	block = append(block, '\r', '\n')
	n, err := checkFields(block, 0)
	if err != nil {
		return err
	}
	f, err := parseFields(string(block), 0, n, nil)
	if err != nil {
		return err
	}
	f.header.Del("content-length")
	b.trailers = f.header
	return io.EOF
}

func (b *bodyReader) Trailers() stack.Header { return b.trailers }

// Close abandons the body if it has not ended.
func (b *bodyReader) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	if !b.done.Load() && b.owner != nil {
		b.owner.bodyAbandoned()
	}
	return nil
}
