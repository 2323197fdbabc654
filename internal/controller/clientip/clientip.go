// Package clientip names the client of a gRPC call by its IP address, the
// key the controller's per-client limits count under: a pod's or a
// machine's own address, so one workload's calls count together however
// many connections it opens. It does not authenticate anyone.
package clientip

import (
	"context"
	"net"

	"google.golang.org/grpc/peer"
)

// FromContext is the IP address of the client of the gRPC call ctx belongs
// to, or "unknown" when gRPC does not say.
func FromContext(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}
