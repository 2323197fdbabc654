// Package model is the control plane's in-memory view of the mesh: services,
// the workloads behind them and who they are. Sources (Kubernetes, a
// directory of manifests) write to it; the destination service reads
// endpoint sets from it and is told of every change. It knows nothing of
// gRPC or of where its data comes from.
package model

import (
	"context"
	"net/netip"
)

// Endpoint is one workload address behind a destination, as proxies see it.
type Endpoint struct {
	Addr   netip.AddrPort
	Weight uint32
	// Labels become dst_* metric labels: at least namespace, service,
	// workload and pod when known.
	Labels map[string]string
	// Identity is the SPIFFE ID the endpoint presents; empty when the
	// workload is not meshed.
	Identity string
	// Protocol is "http1", "h2", "opaque" or empty.
	Protocol string
}

// EndpointSet is the full state of one destination. Values handed to
// watchers are shared and must not be modified.
type EndpointSet struct {
	// Exists is false when the destination is unknown.
	Exists bool
	// Service is "namespace/name" of the logical service, if any.
	Service     string
	Endpoints   []Endpoint
	OpaquePorts []uint16
	// Version tells sets apart without comparing them: every set the model
	// hands out has its own, and the sets of unknown destinations have 0.
	// The destination service computes the change between two versions
	// once for all the streams that watch them.
	Version uint64
}

// Watcher is what the destination service needs from the model.
type Watcher interface {
	// Watch calls update with the current set of dst as soon as it is known
	// and again on every change, until ctx is done; dst is an authority
	// ("name.namespace.svc.cluster.local:port") or "ip:port" (a service IP,
	// or a workload's own address). update is called from one goroutine at a
	// time per watch and must not block for long. Watch returns once the
	// watch is registered.
	Watch(ctx context.Context, dst string, update func(EndpointSet)) error
}
