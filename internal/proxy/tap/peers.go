package tap

import (
	"net/netip"

	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// peers are the two ends of req once the layers below said where it went.
// This proxy's side carries its own identity (when mTLS proved it to the
// peer) and labels; outbound, the destination carries the identity its
// proxy proved and the labels discovery gave its endpoint; inbound, the
// source carries the identity its client certificate proved.
func (t *Tap) peers(direction string, req *stack.Request) (source, dest *tappb.Peer) {
	ci, ri := req.Conn, &req.Info
	if direction == metrics.DirectionInbound {
		source = &tappb.Peer{Address: addrString(ci.Client), Identity: ci.ClientID}
		dest = &tappb.Peer{Address: addrString(ci.OrigDst), Labels: t.labels}
		if ci.ClientID != "" {
			dest.Identity = t.identity
		}
		return source, dest
	}
	source = &tappb.Peer{Address: addrString(ci.Client), Labels: t.labels}
	if ri.ServerID != "" {
		source.Identity = t.identity
	}
	to := outboundPeer(req)
	dest = &tappb.Peer{Address: addrString(to), Identity: ri.ServerID, Labels: destLabels(ri)}
	return source, dest
}

// destLabels are an outbound destination's labels as the metrics carry
// them: discovery's endpoint labels, the service discovery resolved.
func destLabels(ri *stack.RequestInfo) map[string]string {
	dst := metrics.DstFromEndpointLabels(ri.Endpoint.Labels)
	if dst.Service == "" && ri.Service != "" {
		dst.Service = ri.Service
	}
	out := map[string]string{}
	for k, v := range map[string]string{
		metrics.EndpointLabelNamespace: dst.Namespace, metrics.EndpointLabelService: dst.Service,
		metrics.EndpointLabelWorkload: dst.Workload, metrics.EndpointLabelPod: dst.Pod,
	} {
		if v != "" {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// addrString is ap as ip:port, an IPv4 address in its own form (a dual
// stack listener sees it as ::ffff:a.b.c.d); empty when unknown.
func addrString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}
