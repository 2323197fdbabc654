// Package meshtls is how two proxies talk: mutual TLS with the mesh's own
// ALPN protocols, which say what the encrypted stream carries. It wraps
// connections; certificates and their verification come from the proxy's
// identity (internal/proxy/identity).
package meshtls

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// ALPN protocols of the mesh. Inside skein/http is HTTP/2 (or HTTP/1.1 for
// upgrades), detected by its preface; inside skein/opaque are the
// application's bytes as they are.
const (
	ALPNHTTP   = "skein/http"
	ALPNOpaque = "skein/opaque"
)

// ALPNs are all the mesh's protocols, for a server to offer.
var ALPNs = []string{ALPNHTTP, ALPNOpaque}

// IsMesh reports whether a ClientHello's ALPN list asks for the mesh.
func IsMesh(alpn []string) bool {
	return slices.Contains(alpn, ALPNHTTP) || slices.Contains(alpn, ALPNOpaque)
}

// HandshakeTimeout bounds a TLS handshake between proxies.
const HandshakeTimeout = 10 * time.Second

// Client performs a client handshake on raw with cfg and returns the
// connection with its TLS type hidden (see Conn).
func Client(ctx context.Context, raw net.Conn, cfg *tls.Config) (*Conn, error) {
	tc := tls.Client(raw, cfg)
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mesh TLS handshake with %s: %w", raw.RemoteAddr(), err)
	}
	return &Conn{tc: tc}, nil
}

// Server performs a server handshake on raw with cfg.
func Server(ctx context.Context, raw net.Conn, cfg *tls.Config) (*Conn, error) {
	tc := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("mesh TLS handshake from %s: %w", raw.RemoteAddr(), err)
	}
	return &Conn{tc: tc}, nil
}

// Conn is an established mesh TLS connection. It is deliberately not a
// *tls.Conn: net/http would otherwise look for "h2" in the negotiated ALPN,
// while the mesh speaks HTTP/2 by prior knowledge inside skein/http.
type Conn struct {
	tc *tls.Conn
}

func (c *Conn) Read(p []byte) (int, error)         { return c.tc.Read(p) }
func (c *Conn) Write(p []byte) (int, error)        { return c.tc.Write(p) }
func (c *Conn) Close() error                       { return c.tc.Close() }
func (c *Conn) CloseWrite() error                  { return c.tc.CloseWrite() }
func (c *Conn) LocalAddr() net.Addr                { return c.tc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.tc.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.tc.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.tc.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }

// State is the connection's TLS state: negotiated protocol and peer chain.
func (c *Conn) State() tls.ConnectionState { return c.tc.ConnectionState() }

// PeerInboundPort is where a peer proxy takes opaque mesh connections
// directly (its inbound listener). Opaque traffic cannot go to the
// application's port like HTTP does: on an opaque port the peer does not
// look at the first bytes, so it would not see the TLS handshake.
const PeerInboundPort = 4143

// opaqueMagic starts the header of an opaque mesh connection.
var opaqueMagic = [4]byte{'S', 'K', 'O', '1'}

// WriteOpaqueHeader tells the peer proxy, inside mesh TLS, which port of
// its workload the opaque connection is for.
func WriteOpaqueHeader(w io.Writer, port uint16) error {
	var h [6]byte
	copy(h[:], opaqueMagic[:])
	binary.BigEndian.PutUint16(h[4:], port)
	_, err := w.Write(h[:])
	return err
}

// ReadOpaqueHeader reads what WriteOpaqueHeader wrote.
func ReadOpaqueHeader(r io.Reader) (uint16, error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, fmt.Errorf("reading opaque header: %w", err)
	}
	if [4]byte(h[:4]) != opaqueMagic {
		return 0, fmt.Errorf("opaque header starts %q, not %q", h[:4], opaqueMagic[:])
	}
	port := binary.BigEndian.Uint16(h[4:])
	if port == 0 {
		return 0, errors.New("opaque header names port 0")
	}
	return port, nil
}

// OrigProtoHeader marks a request that a client sent in HTTP/1.x and the
// outbound proxy carries over HTTP/2 inside the mesh, so that the inbound
// proxy hands it to the application in HTTP/1.1 again. The inbound proxy
// honours it only from a meshed peer, and never passes it on.
const OrigProtoHeader = "skein-orig-proto"
