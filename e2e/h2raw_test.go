package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/skeinmesh/skein/internal/netns"
)

// rawH2 is a hand-driven HTTP/2 client connection for the attack tests: it
// writes whatever frames a test makes (ones a well-behaved client never
// sends) with x/net/http2's Framer and hpack, buffered and flushed per
// write call. When reading, a goroutine drains what the server sends,
// acknowledges its SETTINGS (nothing else: no WINDOW_UPDATE, no PING ack)
// and notes its MAX_CONCURRENT_STREAMS, refused streams and GOAWAY.
type rawH2 struct {
	c         net.Conn
	authority string

	mu  sync.Mutex // guards the writer, fr's writes and enc
	w   *bufio.Writer
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer

	done       chan struct{} // closed when the reader stops (reading connections only)
	goAway     atomic.Int64  // 1 + the GOAWAY's error code, 0 if none came
	refused    atomic.Int64  // RST_STREAM frames the server sent
	maxStreams atomic.Int64  // the server's SETTINGS_MAX_CONCURRENT_STREAMS, -1 if it sent none
}

// dialRawH2 connects from host to target, writes the preface and a SETTINGS
// frame with settings; read starts the reader.
func dialRawH2(ctx context.Context, from *netns.Host, target string, read bool, settings ...http2.Setting) (*rawH2, error) {
	c, err := dialer(from)(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	r := &rawH2{c: c, authority: target, done: make(chan struct{})}
	r.maxStreams.Store(-1)
	r.w = bufio.NewWriterSize(c, 64<<10)
	r.fr = http2.NewFramer(r.w, c)
	r.fr.AllowIllegalWrites = true // the attacks write what no client should
	r.enc = hpack.NewEncoder(&r.buf)
	if err := r.write(func(fr *http2.Framer) error {
		if _, err := r.w.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		return fr.WriteSettings(settings...)
	}); err != nil {
		c.Close()
		return nil, err
	}
	if read {
		go r.read()
	} else {
		close(r.done)
	}
	return r, nil
}

func (r *rawH2) Close() error { return r.c.Close() }

// write runs fn with the framer, then flushes, under a 10 s write deadline
// (a server that stops reading must not wedge the test).
func (r *rawH2) write(fn func(fr *http2.Framer) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := fn(r.fr); err != nil {
		return err
	}
	return r.w.Flush()
}

func (r *rawH2) read() {
	defer close(r.done)
	fr := http2.NewFramer(nil, r.c)
	fr.SetMaxReadFrameSize(1 << 24)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				r.maxStreams.Store(int64(v))
			}
			r.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
		case *http2.RSTStreamFrame:
			r.refused.Add(1)
		case *http2.GoAwayFrame:
			r.goAway.CompareAndSwap(0, 1+int64(f.ErrCode))
		}
	}
}

// closed reports whether the server ended the connection (reading
// connections only).
func (r *rawH2) closed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// block encodes a GET for path with extra fields; the caller holds r.mu
// (or is the only writer). The result is valid until the next call.
func (r *rawH2) block(path string, extra ...hpack.HeaderField) []byte {
	r.buf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: r.authority}, {Name: ":path", Value: path},
	}, extra...) {
		r.enc.WriteField(f)
	}
	return r.buf.Bytes()
}

// get writes a GET for path on stream id, ending the stream.
func (r *rawH2) get(fr *http2.Framer, id uint32, path string, extra ...hpack.HeaderField) error {
	return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(path, extra...), EndStream: true, EndHeaders: true})
}
