package tapapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type connKey struct{}

// ConnContext is the metrics API server's http.Server.ConnContext: it
// keeps the connection so that Requester can ask a unix socket who is on
// the other end.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Requester says who sent r, for the session log: on a unix socket the
// peer's uid and pid (SO_PEERCRED); over TLS the client certificate's
// SPIFFE ID or subject; else the remote address.
func Requester(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cert := r.TLS.PeerCertificates[0]
		if id, err := x509svid.IDFromCert(cert); err == nil {
			return "cert:" + id.String()
		}
		return "cert:" + cert.Subject.String()
	}
	if c, ok := r.Context().Value(connKey{}).(*net.UnixConn); ok {
		if cred, err := peerCred(c); err == nil {
			return fmt.Sprintf("unix:uid=%d,pid=%d", cred.Uid, cred.Pid)
		}
		return "unix:unknown peer"
	}
	if r.RemoteAddr != "" && !strings.HasPrefix(r.RemoteAddr, "@") {
		return "addr:" + r.RemoteAddr
	}
	return "unknown"
}

func peerCred(c *net.UnixConn) (*syscall.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, credErr
}
