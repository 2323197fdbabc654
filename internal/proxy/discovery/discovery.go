// Package discovery is the proxy's view of where a destination's endpoints
// are. It defines the Resolver seam the proxy asks, and the types it answers
// with; sources (a watched file here, the control plane later) implement it.
// It does not balance or connect: that is the balancer's job.
package discovery

import (
	"context"
	"net/netip"
)

// Protocol hints what an endpoint speaks, so the proxy can skip detection.
type Protocol string

const (
	ProtocolUnknown Protocol = ""
	ProtocolHTTP1   Protocol = "http1"
	ProtocolHTTP2   Protocol = "h2"
	ProtocolOpaque  Protocol = "opaque"
)

// Endpoint is one workload address behind a destination.
type Endpoint struct {
	Addr netip.AddrPort
	// Weight scales the endpoint's share; 0 is read as 1.
	Weight uint32
	// Labels describe the workload (pod, namespace, workload name); they
	// become dst_* metric labels.
	Labels map[string]string
	// Identity is the TLS identity the endpoint must prove; empty when the
	// endpoint is not meshed.
	Identity string
	Protocol Protocol
}

// EndpointSet is the full state of one destination at one moment.
type EndpointSet struct {
	// Exists is false when the source does not know the destination: the
	// proxy then forwards to the original destination as it is.
	Exists    bool
	Endpoints []Endpoint
	// OpaquePorts are ports on which protocol detection is skipped.
	OpaquePorts []uint16
}

// Resolver answers "where are the endpoints of dst right now, and tell me
// when that changes". dst is an authority ("name:port") or an "ip:port".
type Resolver interface {
	// Watch calls update with the destination's current set as soon as it
	// is known and again on every change, until ctx is done. update is
	// called from one goroutine at a time and must not block for long.
	// Watch returns once the watch is registered.
	Watch(ctx context.Context, dst string, update func(EndpointSet)) error
}
