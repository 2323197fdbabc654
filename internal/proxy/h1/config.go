package h1

import "time"

// Config holds the engine's limits and timeouts. A zero field takes its
// default (DefaultConfig); a Server and a Client read the fields that
// concern them.
type Config struct {
	// MaxHeaderBytes caps a request's or response's head (request or status
	// line plus fields) and a chunked body's trailer block. A larger request
	// head is answered 431; a larger response head is an error. Default 64 KiB.
	MaxHeaderBytes int
	// MaxRequestLineBytes caps the request line; longer is answered 414.
	// Default 8 KiB.
	MaxRequestLineBytes int
	// ReadHeaderTimeout is how long a client has, from the first byte of a
	// request, to send the whole head (slowloris). Default 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a server-side keep-alive connection that waits this
	// long for its next request. Default 5 min.
	IdleTimeout time.Duration
	// BodyTimeout cuts a body that stops moving: the server closes a client
	// whose request body sends nothing, or which reads none of its response,
	// for this long. Tunnels are not subject to it. Default 60 s.
	BodyTimeout time.Duration
	// TunnelIdleTimeout closes a tunnel (after a 101 or a 2xx to CONNECT)
	// on which no byte moved either way for this long. Default 1 h.
	TunnelIdleTimeout time.Duration
	// MaxIdleConns caps a Client's idle keep-alive connections. Default 100.
	MaxIdleConns int
	// PoolIdleTimeout closes a Client's connection idle this long. Default 90 s.
	PoolIdleTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxHeaderBytes:      64 << 10,
		MaxRequestLineBytes: 8 << 10,
		ReadHeaderTimeout:   10 * time.Second,
		IdleTimeout:         5 * time.Minute,
		BodyTimeout:         60 * time.Second,
		TunnelIdleTimeout:   time.Hour,
		MaxIdleConns:        100,
		PoolIdleTimeout:     90 * time.Second,
	}
}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.MaxRequestLineBytes <= 0 {
		c.MaxRequestLineBytes = d.MaxRequestLineBytes
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = d.BodyTimeout
	}
	if c.TunnelIdleTimeout <= 0 {
		c.TunnelIdleTimeout = d.TunnelIdleTimeout
	}
	if c.MaxIdleConns <= 0 {
		c.MaxIdleConns = d.MaxIdleConns
	}
	if c.PoolIdleTimeout <= 0 {
		c.PoolIdleTimeout = d.PoolIdleTimeout
	}
	return c
}

// smallBody is the largest body sent in the same write as its head.
const smallBody = 64 << 10
