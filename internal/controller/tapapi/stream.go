package tapapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/tap"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// observe streams one proxy's events, converted, into out until ctx ends
// or the proxy's stream does; a failure becomes an error event. out is
// the session's, drained by its writer until ctx ends.
func (s *server) observe(ctx context.Context, t Target, req *tappb.ObserveRequest, out chan<- tap.Event) error {
	tlsConfig, err := s.cfg.TLS(t.Identity)
	if err != nil {
		return fmt.Errorf("the controller's client certificate: %w", err)
	}
	conn, err := grpc.NewClient("passthrough:///"+t.Addr.String(), grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		return fmt.Errorf("dialing %s: %w", t.Addr, err)
	}
	defer conn.Close()
	stream, err := tappb.NewTapClient(conn).Observe(ctx, req, grpc.WaitForReady(false))
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		for _, e := range convert(t.Name(), ev) {
			s.name(&e.Source)
			s.name(&e.Dest)
			select {
			case out <- e:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// name fills in the workload of a peer the proxy knew only by address
// (an inbound request's client) from the model.
func (s *server) name(p *tap.Peer) {
	if p.Workload != "" || p.Address == "" {
		return
	}
	ap, err := netip.ParseAddrPort(p.Address)
	if err != nil {
		return
	}
	if in, ok := s.cfg.Model.InstanceAt(ap.Addr()); ok {
		p.Namespace, p.Workload, p.Pod = in.Namespace, in.Workload, in.Name
	}
}

// errorEvent tells the client a proxy could not be tapped, in words that
// say nothing of the controller's insides.
func errorEvent(proxy string, err error) tap.Event {
	msg := "the proxy's tap stream failed"
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		msg = "the proxy's tap API is unreachable or refused the controller's identity"
	case codes.PermissionDenied, codes.Unauthenticated:
		msg = "the proxy refused the controller"
	case codes.Unimplemented:
		msg = "the proxy does not serve tap"
	case codes.ResourceExhausted:
		msg = "the proxy has too many tap sessions"
	case codes.InvalidArgument:
		msg = "the proxy refused the tap request: " + status.Convert(err).Message()
	}
	return tap.Event{Kind: tap.KindError, Time: time.Now(), Proxy: proxy, Error: msg}
}

// observeRequest is what every proxy of the session is asked, with the
// bodies and redactions its own annotations allow.
func observeRequest(filter *tappb.Filter, maxRPS int, b BodyOptions) *tappb.ObserveRequest {
	return &tappb.ObserveRequest{
		Filter:             filter,
		MaxEventsPerSecond: uint32(maxRPS),
		BodyBytes:          b.BodyBytes,
		RedactJsonFields:   b.RedactJSONFields,
		RedactPatterns:     b.RedactPatterns,
		RedactHeaders:      b.RedactHeaders,
	}
}

// convert turns one proxy event into the API's events: a dropped event
// first when the proxy reports drops, then the event itself.
func convert(proxy string, ev *tappb.Event) []tap.Event {
	var out []tap.Event
	when := time.Now()
	if ev.GetTime() != nil {
		when = ev.GetTime().AsTime()
	}
	if ev.GetDropped() > 0 {
		out = append(out, tap.Event{Kind: tap.KindDropped, Time: when, Proxy: proxy, Dropped: ev.GetDropped()})
	}
	e := tap.Event{
		Time: when, Proxy: proxy, Stream: ev.GetStream(), Direction: ev.GetDirection(),
		Source: peerOf(ev.GetSource()), Dest: peerOf(ev.GetDestination()),
	}
	switch k := ev.GetKind().(type) {
	case *tappb.Event_Request:
		r := k.Request
		e.Kind = tap.KindRequest
		e.Method, e.Scheme, e.Authority, e.Path, e.Route = r.GetMethod(), r.GetScheme(), r.GetAuthority(), r.GetPath(), r.GetRoute()
		e.Headers = headersOf(r.GetHeaders())
		e.Body, e.BodyTruncated = string(r.GetBodyPrefix()), r.GetBodyTruncated()
	case *tappb.Event_Response:
		r := k.Response
		e.Kind = tap.KindResponse
		e.Status = int(r.GetStatus())
		e.LatencyMs = ms(r.GetLatency().AsDuration())
		e.Headers = headersOf(r.GetHeaders())
	case *tappb.Event_End:
		r := k.End
		e.Kind = tap.KindEnd
		if g := r.GetGrpcStatus(); g >= 0 {
			gs := int(g)
			e.GRPCStatus = &gs
		}
		e.Status = int(r.GetStatus())
		e.DurationMs = ms(r.GetDuration().AsDuration())
		e.RequestBytes, e.ResponseBytes = r.GetRequestBytes(), r.GetResponseBytes()
		e.Error = r.GetError()
		e.Body, e.BodyTruncated = string(r.GetResponseBodyPrefix()), r.GetResponseBodyTruncated()
	default:
		return out // a drop report alone
	}
	return append(out, e)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func peerOf(p *tappb.Peer) tap.Peer {
	l := p.GetLabels()
	return tap.Peer{
		Address: p.GetAddress(), Identity: p.GetIdentity(),
		Namespace: l["namespace"], Workload: l["workload"], Pod: l["pod"], Service: l["service"],
	}
}

func headersOf(hs []*tappb.Header) []tap.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]tap.Header, len(hs))
	for i, h := range hs {
		out[i] = tap.Header{Name: h.GetName(), Value: h.GetValue()}
	}
	return out
}

// TLSFunc gives the TLS config to call a proxy that must present
// identity with.
type TLSFunc func(identity string) (*tls.Config, error)
