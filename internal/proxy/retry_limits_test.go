package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/routes"
)

// flakyService fails its first calls with UNAVAILABLE, after sending
// headers (so the status comes in the trailers, linkerd2#7701) unless
// trailersOnly, and keeps every call's payload.
type flakyService struct {
	testpb.UnimplementedTestServiceServer
	fail         int
	trailersOnly bool
	mu           sync.Mutex
	payloads     [][]byte
}

func (s *flakyService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.mu.Lock()
	s.payloads = append(s.payloads, req.GetPayload().GetBody())
	n := len(s.payloads)
	s.mu.Unlock()
	if n <= s.fail {
		if !s.trailersOnly {
			grpc.SendHeader(ctx, metadata.Pairs("x-attempt", "failing"))
		}
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

// FullDuplexCall answers each message as it comes.
func (s *flakyService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func (s *flakyService) calls() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.payloads...)
}

func grpcTestBackend(t *testing.T, svc testpb.TestServiceServer) string {
	t.Helper()
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// A gRPC UNAVAILABLE is retried whether it comes in the trailers or in a
// trailers-only answer, and the grpc-go client sees OK; a code the rule
// does not list is not retried.
func TestRetryGRPCStatusFromTrailers(t *testing.T) {
	for _, c := range []struct {
		name         string
		trailersOnly bool
		codes        []int
		wantCode     codes.Code
		wantCalls    int
	}{
		{"UNAVAILABLE in trailers", false, []int{14}, codes.OK, 2},
		{"UNAVAILABLE trailers-only", true, []int{14}, codes.OK, 2},
		{"a code not listed", false, []int{13}, codes.Unavailable, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := &flakyService{fail: 1, trailersOnly: c.trailersOnly}
			rule := routes.Rule{Retry: &routes.Retry{GRPC: c.codes, BackoffBase: time.Millisecond}}
			proxy, _ := retryProxy(t, grpcTestBackend(t, svc), rule, routes.Budget{})
			cc, err := grpc.NewClient(proxy, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(retryDest))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sent := payload(3000)
			resp, err := testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 100, Payload: &testpb.Payload{Body: sent}})
			if got := status.Code(err); got != c.wantCode {
				t.Fatalf("client got %v (%v), want %v", got, err, c.wantCode)
			}
			if err == nil && len(resp.GetPayload().GetBody()) != 100 {
				t.Fatalf("answer of %d bytes, want 100", len(resp.GetPayload().GetBody()))
			}
			calls := svc.calls()
			if len(calls) != c.wantCalls {
				t.Fatalf("backend saw %d calls, want %d", len(calls), c.wantCalls)
			}
			for i, p := range calls {
				if !bytes.Equal(p, sent) {
					t.Errorf("call %d carried %d bytes, not the client's %d", i+1, len(p), len(sent))
				}
			}
		})
	}
}

// A bidirectional stream whose client waits for each answer before it
// sends the next message is not held for its trailers (it would never
// end): it flows, under a rule that retries gRPC codes.
func TestRetryLetsAConversationFlow(t *testing.T) {
	rule := routes.Rule{Retry: &routes.Retry{GRPC: []int{14}, BackoffBase: time.Millisecond}}
	proxy, _ := retryProxy(t, grpcTestBackend(t, &flakyService{}), rule, routes.Budget{})
	cc, err := grpc.NewClient(proxy, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(retryDest))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := testpb.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := []byte(fmt.Sprintf("ping %d", i))
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: msg}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if !bytes.Equal(resp.GetPayload().GetBody(), msg) {
			t.Fatalf("answer %d: %q, want %q", i, resp.GetPayload().GetBody(), msg)
		}
	}
	stream.CloseSend()
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("end of stream: %v, want EOF (OK)", err)
	}
}

// An answer longer than 64 KiB before its trailers goes to the client as
// it comes, whole, and is not retried whatever its trailers say; a short
// one with the same trailers is retried up to the limit.
func TestRetryNotOnceTheAnswerOutgrewTheHold(t *testing.T) {
	for _, c := range []struct {
		size      int
		wantCalls int32
	}{
		{1 << 10, 3},   // held, retried: the first attempt and 2 retries
		{100 << 10, 1}, // released: never retried
	} {
		t.Run(fmt.Sprintf("%d bytes", c.size), func(t *testing.T) {
			want := payload(c.size)
			var calls atomic.Int32
			addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/grpc")
				w.Write(want)
				w.Header().Set(http.TrailerPrefix+"Grpc-Status", "14")
			}))
			rule := routes.Rule{Retry: &routes.Retry{GRPC: []int{14}, BackoffBase: time.Millisecond}}
			proxy, _ := retryProxy(t, addr, rule, routes.Budget{})
			req, _ := http.NewRequest("POST", "http://"+proxy+"/grpc.testing.TestService/StreamingOutputCall", strings.NewReader("\x00\x00\x00\x00\x00"))
			req.Host = retryDest
			req.Header.Set("Content-Type", "application/grpc")
			resp, err := h2cClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || resp.Trailer.Get("Grpc-Status") != "14" {
				t.Fatalf("client got %d bytes (want %d, equal: %v), grpc-status %q (want 14)",
					len(got), len(want), bytes.Equal(got, want), resp.Trailer.Get("Grpc-Status"))
			}
			if n := calls.Load(); n != c.wantCalls {
				t.Fatalf("backend saw %d calls, want %d", n, c.wantCalls)
			}
		})
	}
}

// A request body over 64 KiB is not kept for replay: it reaches the
// backend whole, once, and its failure goes to the client; whether its
// length was announced or not, over HTTP/1.1 and HTTP/2. A short one is
// retried.
func TestRetryNotForBodiesOverTheReplayBuffer(t *testing.T) {
	for _, c := range []struct {
		name      string
		client    *http.Client
		size      int
		known     bool
		wantCalls int
	}{
		{"HTTP/1.1 100 KiB announced", &http.Client{Timeout: 10 * time.Second}, 100 << 10, true, 1},
		{"HTTP/1.1 100 KiB chunked", &http.Client{Timeout: 10 * time.Second}, 100 << 10, false, 1},
		{"HTTP/2 100 KiB announced", h2cClient(), 100 << 10, true, 1},
		{"HTTP/2 100 KiB unannounced", h2cClient(), 100 << 10, false, 1},
		{"HTTP/2 60 KiB unannounced", h2cClient(), 60 << 10, false, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := payload(c.size)
			var mu sync.Mutex
			var bodies [][]byte
			addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, b)
				mu.Unlock()
				w.WriteHeader(503)
			}))
			proxy, _ := retryProxy(t, addr, retryOn5xx(), routes.Budget{})
			var body io.Reader = bytes.NewReader(want)
			if !c.known {
				body = io.MultiReader(body)
			}
			if status, _ := send(t, c.client, proxy, "PUT", body); status != 503 {
				t.Fatalf("client got %d, want the backend's 503", status)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != c.wantCalls {
				t.Fatalf("backend saw %d requests, want %d", len(bodies), c.wantCalls)
			}
			for i, b := range bodies {
				if !bytes.Equal(b, want) {
					t.Errorf("request %d carried %d bytes, not the client's %d", i+1, len(b), len(want))
				}
			}
		})
	}
}

// An attempt that outlives the per-try timeout is abandoned and retried.
func TestRetryAfterThePerTryTimeout(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select { // the first attempt hangs until abandoned
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	rule := retryOn5xx()
	rule.Retry.PerTry = 100 * time.Millisecond
	proxy, _ := retryProxy(t, addr, rule, routes.Budget{})
	status, body := send(t, &http.Client{Timeout: 10 * time.Second}, proxy, "GET", nil)
	if status != 200 || string(body) != "ok" || calls.Load() != 2 {
		t.Fatalf("client got %d %q after %d attempts, want 200 ok after 2", status, body, calls.Load())
	}
}

// When every attempt outlives the per-try timeout, the client gets 504
// once the limit is reached, not the backend's eventual answer.
func TestRetryPerTryTimeoutOnTheLastAttemptAnswers504(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	rule := retryOn5xx()
	rule.Retry.Limit = 1
	rule.Retry.PerTry = 50 * time.Millisecond
	proxy, reg := retryProxy(t, addr, rule, routes.Budget{})
	status, _ := send(t, &http.Client{Timeout: 10 * time.Second}, proxy, "GET", nil)
	if status != http.StatusGatewayTimeout || calls.Load() != 2 {
		t.Fatalf("client got %d after %d attempts, want 504 after 2", status, calls.Load())
	}
	if got := metricSum(t, reg, "route_retry_total", map[string]string{"result": "limit_reached"}); got != 1 {
		t.Errorf("route_retry_total{result=limit_reached} = %v, want 1", got)
	}
}
