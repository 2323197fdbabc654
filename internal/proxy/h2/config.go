package h2

import "time"

// Config holds the engine's limits and timeouts. A zero field takes its
// default (see DefaultConfig); Server and Client apply the defaults.
type Config struct {
	// MaxConcurrentStreams is the stream limit the Server advertises and
	// enforces (REFUSED_STREAM past it). Default 250, as net/http's: a
	// request held open costs the proxy about 18 KiB (its handler
	// goroutine's stack, both streams, the upstream request), so 1,000 per
	// connection let one client take 18 MiB. The Client obeys the peer's
	// own limit (and opens another connection past it).
	MaxConcurrentStreams uint32
	// StreamWindow and ConnWindow are the receive windows: how much a peer
	// may send on one stream and on the whole connection before we read it.
	// Defaults 1 MiB and 2 MiB: a 4 MiB gRPC message needs a few window
	// updates, which within a cluster cost little. What the connection
	// window allows is what an upstream connection can hold for streams
	// whose client does not read (a zero-window stall), and the heap grows
	// by about twice it: 4 MiB made that +11 MiB.
	StreamWindow int32
	ConnWindow   int32
	// MaxHeaderBlock caps one encoded header block (HEADERS and its
	// CONTINUATIONs, frame headers counted): past it the connection ends
	// with GOAWAY. Default 64 KiB.
	MaxHeaderBlock int
	// MaxHeaderListSize caps the decoded header list (RFC 9113 size: names,
	// values and 32 bytes per field); past it the request is answered 431
	// (the response, as a stream error). Default 64 KiB.
	MaxHeaderListSize uint32
	// HandshakeTimeout bounds the client preface and first SETTINGS; a
	// header block must also complete within it. Default 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that has had no stream for this
	// long. Default 5 min.
	IdleTimeout time.Duration
	// StallTimeout resets a stream that has had data to send but no flow
	// control window for this long. Default 30 s.
	StallTimeout time.Duration
	// KeepaliveInterval and KeepaliveTimeout: the Client PINGs a
	// connection from which nothing was read for KeepaliveInterval and
	// closes it when the answer takes longer than KeepaliveTimeout.
	// Defaults 30 s and 10 s.
	KeepaliveInterval time.Duration
	KeepaliveTimeout  time.Duration
	// ResetRate and ResetBurst bound the streams a peer may reset or have
	// refused per second (CVE-2023-44487): past them the peer gets GOAWAY
	// ENHANCE_YOUR_CALM. Defaults 200/s and 1000.
	ResetRate  float64
	ResetBurst int
	// MaxQueuedControlFrames bounds the frames queued in answer to the peer
	// (SETTINGS and PING acks, RST_STREAM, window updates to apply) that
	// have not been written yet: past it the peer gets GOAWAY
	// ENHANCE_YOUR_CALM. Default 10000, as net/http.
	MaxQueuedControlFrames int
	// PingAckDelay is how long the answer to a peer's PING may wait for
	// other frames to go out with (grpc-go PINGs on every message it
	// receives, to estimate bandwidth; answered alone, that is one write per
	// call). Default 5 ms; negative answers at once.
	PingAckDelay time.Duration
	// WriteBufferSize and ReadBufferSize size the connection's buffers.
	// Defaults 32 KiB each.
	WriteBufferSize int
	ReadBufferSize  int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{}.withDefaults() }

func (c Config) withDefaults() Config {
	setDefault(&c.MaxConcurrentStreams, 250)
	setDefault(&c.StreamWindow, 1<<20)
	setDefault(&c.ConnWindow, 2<<20)
	setDefault(&c.MaxHeaderBlock, 64<<10)
	setDefault(&c.MaxHeaderListSize, 64<<10)
	setDefault(&c.HandshakeTimeout, 10*time.Second)
	setDefault(&c.IdleTimeout, 5*time.Minute)
	setDefault(&c.StallTimeout, 30*time.Second)
	setDefault(&c.KeepaliveInterval, 30*time.Second)
	setDefault(&c.KeepaliveTimeout, 10*time.Second)
	setDefault(&c.ResetRate, 200)
	setDefault(&c.ResetBurst, 1000)
	setDefault(&c.MaxQueuedControlFrames, 10000)
	setDefault(&c.PingAckDelay, 5*time.Millisecond)
	setDefault(&c.WriteBufferSize, defaultWriteBufferSize)
	setDefault(&c.ReadBufferSize, defaultWriteBufferSize)
	if c.StreamWindow < 65535 {
		c.StreamWindow = 65535
	}
	if c.ConnWindow < 65535 {
		c.ConnWindow = 65535
	}
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
