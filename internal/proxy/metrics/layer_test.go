package metrics

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// answering is a terminal handler that says where the request went and
// answers resp.
func answering(resp *stack.Response, err error) stack.Handler {
	return stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		req.Info.Service = "Emoji.Demo.svc.cluster.local.:8080"
		req.Info.ServerID = "spiffe://skein.local/ns/demo/sa/emoji"
		req.Info.Endpoint = discovery.Endpoint{Addr: netip.MustParseAddrPort("198.18.0.5:8080"),
			Labels: map[string]string{"namespace": "demo", "service": "emoji", "pod": "emoji-0"}}
		return resp, err
	})
}

func grpcHeader(status string) stack.Header {
	h := stack.Header{{Name: "content-type", Value: "application/grpc"}}
	if status != "" {
		h.Add("grpc-status", status)
	}
	return h
}

func TestMetricsLayerLabelsAndStatuses(t *testing.T) {
	for _, c := range []struct {
		name      string
		resp      *stack.Response
		err       error
		readBody  bool // to the end; else the body is closed unread
		wantCode  string
		wantGRPC  string
		wantClass string
	}{
		{"http 200", &stack.Response{Status: 200, Body: stack.NoBody}, nil, false, "200", "", "success"},
		{"http 503", &stack.Response{Status: 503, Body: stack.NoBody}, nil, false, "503", "", "failure"},
		{"error", nil, errors.New("boom"), false, "", "", "failure"},
		{"grpc trailers-only", &stack.Response{Status: 200, Header: grpcHeader("14"), Body: stack.NoBody}, nil, false, "200", "14", "failure"},
		{"grpc status in trailers", &stack.Response{Status: 200, Header: grpcHeader(""),
			Body: stack.BytesBody([]byte("msg"), stack.Header{{Name: "grpc-status", Value: "5"}})}, nil, true, "200", "5", "success"},
		{"grpc body cut short", &stack.Response{Status: 200, Header: grpcHeader(""),
			Body: stack.BytesBody([]byte("msg"), stack.Header{{Name: "grpc-status", Value: "0"}})}, nil, false, "200", "", "success"},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			h := stack.Build(answering(c.resp, c.err), Layer(reg, DirectionOutbound))
			req := &stack.Request{Conn: &stack.ConnInfo{Direction: "outbound"}, Body: stack.NoBody}
			resp, err := h.Serve(context.Background(), req)
			if (err != nil) != (c.err != nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if resp != nil {
				if c.readBody {
					io.ReadAll(resp.Body)
				}
				resp.Body.Close()
			}
			series := seriesLabels(t, reg.Gatherer(), "response_total")
			if len(series) != 1 {
				t.Fatalf("%d response_total series, want 1: %v", len(series), series)
			}
			got := series[0]
			want := map[string]string{
				"direction": "outbound", "authority": "emoji.demo.svc.cluster.local:8080", "target_addr": "198.18.0.5:8080",
				"tls": "true", "server_id": "spiffe://skein.local/ns/demo/sa/emoji", "dst_service": "emoji", "dst_pod": "emoji-0",
				"status_code": c.wantCode, "grpc_status": c.wantGRPC, "classification": c.wantClass,
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("label %s=%q, want %q", k, got[k], v)
				}
			}
			if n := sumCounter(t, reg.Gatherer(), "request_total"); n != 1 {
				t.Errorf("request_total %v, want 1", n)
			}
		})
	}
}

func TestMetricsLayerCountsAGRPCResponseOnce(t *testing.T) {
	reg := newTestRegistry(t)
	body := stack.BytesBody([]byte("m"), stack.Header{{Name: "grpc-status", Value: "0"}})
	h := stack.Build(answering(&stack.Response{Status: 200, Header: grpcHeader(""), Body: body}, nil), Layer(reg, DirectionOutbound))
	resp, _ := h.Serve(context.Background(), &stack.Request{Conn: &stack.ConnInfo{}, Body: stack.NoBody})
	if sumCounter(t, reg.Gatherer(), "response_total") != 0 {
		t.Error("a gRPC response was counted before its trailers arrived")
	}
	io.ReadAll(resp.Body)
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := sumCounter(t, reg.Gatherer(), "response_total"); n != 1 {
		t.Errorf("response_total %v, want 1", n)
	}
}

// An inbound request is never labelled with what the client sent.
func TestMetricsLayerInboundAuthorityIsUnknown(t *testing.T) {
	reg := newTestRegistry(t)
	end := stack.HandlerFunc(func(context.Context, *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	})
	ci := &stack.ConnInfo{Direction: "inbound", OrigDst: netip.MustParseAddrPort("10.0.0.9:8080"), Target: "unknown",
		ClientID: "spiffe://skein.local/ns/a/sa/b"}
	req := &stack.Request{Authority: "invented.example:80", Conn: ci, Body: stack.NoBody}
	stack.Build(end, Layer(reg, DirectionInbound)).Serve(context.Background(), req)
	got := seriesLabels(t, reg.Gatherer(), "request_total")[0]
	if got["authority"] != "unknown" || got["target_addr"] != "unknown" || got["tls"] != "true" || got["client_id"] != ci.ClientID {
		t.Errorf("labels %v", got)
	}
}

// An engine that splices the body under the metrics layer's wrapper
// (stack.Unwrapper) moves the bytes itself, then reads the wrapper once
// with no room and closes it: the status is recorded from the trailers,
// once.
func TestMetricsLayerLearnsASplicedBodysEnd(t *testing.T) {
	reg := newTestRegistry(t)
	inner := stack.BytesBody([]byte("m"), stack.Header{{Name: "grpc-status", Value: "13"}})
	h := stack.Build(answering(&stack.Response{Status: 200, Header: grpcHeader(""), Body: inner}, nil), Layer(reg, DirectionOutbound))
	resp, _ := h.Serve(context.Background(), &stack.Request{Conn: &stack.ConnInfo{}, Body: stack.NoBody})
	w, ok := resp.Body.(stack.Unwrapper)
	if !ok || w.Unwrap() != inner {
		t.Fatalf("the gRPC response body is %T, want a stack.Unwrapper over the engine's body", resp.Body)
	}
	if n, err := inner.Read(make([]byte, 8)); n != 1 || err != nil {
		t.Fatalf("engine's read of the inner body: %d, %v", n, err)
	}
	if n, err := w.Read(nil); n != 0 || err != io.EOF {
		t.Fatalf("the wrapper's read with no room after the end: %d, %v; want 0, EOF", n, err)
	}
	w.Close()
	got := seriesLabels(t, reg.Gatherer(), "response_total")
	if len(got) != 1 || got[0]["grpc_status"] != "13" || got[0]["classification"] != "failure" {
		t.Errorf("response_total series %v, want one with grpc_status 13, failure", got)
	}
}
