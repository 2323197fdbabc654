package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// conformanceService is the wire mesh's gRPC application (grpc-go's interop
// TestService, in this process), so that the tests can see what the server
// saw. A call names itself with the x-test-id metadata and chooses what
// the server does with x-behaviour:
//   - "echo-metadata": every x-echo-* entry comes back in the headers, and
//     as x-trail-* in the trailers (binary -bin entries too);
//   - "wait-for-deadline" (UnaryCall): block until the call's context
//     ends, and record its error;
//   - "cancel-after-first" (StreamingOutputCall): send one message, then
//     block until the context ends, and record its error.
//
// UnimplementedCall is left unimplemented.
type conformanceService struct {
	testpb.UnimplementedTestServiceServer
	mu   sync.Mutex
	seen map[string]chan serverEnd // x-test-id -> how the server's context ended
}

// serverEnd is how a call's context ended on the server's side.
type serverEnd struct {
	err      error     // context.Canceled, context.DeadlineExceeded, or a timeout
	deadline time.Time // the server's deadline (from grpc-timeout), zero if none
}

func newConformanceService() *conformanceService {
	return &conformanceService{seen: map[string]chan serverEnd{}}
}

// ended returns the channel on which the server reports how the call named
// id ended on its side.
func (s *conformanceService) ended(id string) chan serverEnd {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.seen[id]
	if !ok {
		c = make(chan serverEnd, 1)
		s.seen[id] = c
	}
	return c
}

// waitForEnd blocks until ctx ends (at most a minute) and records why.
func (s *conformanceService) waitForEnd(ctx context.Context) {
	end := serverEnd{}
	end.deadline, _ = ctx.Deadline()
	select {
	case <-ctx.Done():
		end.err = ctx.Err()
	case <-time.After(time.Minute):
		end.err = errors.New("the server's context never ended")
	}
	s.ended(incoming(ctx, "x-test-id")) <- end
}

func incoming(ctx context.Context, key string) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// echoMetadata sends the call's x-echo-* metadata back as headers and as
// x-trail-* trailers.
func echoMetadata(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	header, trailer := metadata.MD{}, metadata.MD{}
	for k, v := range md {
		if rest, ok := strings.CutPrefix(k, "x-echo-"); ok {
			header[k] = v
			trailer["x-trail-"+rest] = v
		}
	}
	if err := grpc.SetHeader(ctx, header); err != nil {
		return err
	}
	return grpc.SetTrailer(ctx, trailer)
}

func (s *conformanceService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *conformanceService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	switch incoming(ctx, "x-behaviour") {
	case "echo-metadata":
		if err := echoMetadata(ctx); err != nil {
			return nil, err
		}
	case "wait-for-deadline":
		s.waitForEnd(ctx)
		return nil, status.Error(codes.Internal, "the server should not be heard after the deadline")
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (s *conformanceService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if incoming(stream.Context(), "x-behaviour") == "cancel-after-first" {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte("first")}}); err != nil {
			return err
		}
		s.waitForEnd(stream.Context())
		return nil
	}
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return nil
}

func (s *conformanceService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total, n := 0, 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("x-count", strconv.Itoa(n)))
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
		n++
	}
}

// FullDuplexCall echoes every payload and ends with the count in a trailer.
func (s *conformanceService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	if incoming(stream.Context(), "x-behaviour") == "echo-metadata" {
		if err := echoMetadata(stream.Context()); err != nil {
			return err
		}
	}
	n := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("x-count", strconv.Itoa(n)))
			return nil
		}
		if err != nil {
			return err
		}
		n++
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestGRPCConformanceThroughTheMesh drives real grpc-go clients through the
// client's proxy and the server's proxy to a grpc-go server, in the shapes
// TestGRPCStreamingShapesLargeMessagesAndStatus does not: empty calls and
// streams, 4 MiB messages both ways on one bidi stream, metadata and
// trailers (binary too), Unicode status messages, a deadline that expires
// at the server, a cancel after the first response, and unimplemented
// methods and services.
func TestGRPCConformanceThroughTheMesh(t *testing.T) {
	w := getWire(t)
	cc := wireGRPCConn(t, w)
	client := testpb.NewTestServiceClient(cc)
	ctxFor := func(t *testing.T, kv ...string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, append([]string{"x-test-id", t.Name()}, kv...)...)
	}

	t.Run("empty unary", func(t *testing.T) {
		if _, err := client.EmptyCall(ctxFor(t), &testpb.Empty{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("empty streams", func(t *testing.T) {
		ctx := ctxFor(t)
		in, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := in.CloseAndRecv()
		if err != nil || resp.GetAggregatedPayloadSize() != 0 || first(in.Trailer(), "x-count") != "0" {
			t.Errorf("client stream of no messages: %v, %v, trailer %v; want size 0, x-count 0", resp, err, in.Trailer())
		}
		out, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := out.Recv(); err != io.EOF {
			t.Errorf("server stream of no messages: got %v, %v; want EOF", m, err)
		}
		bidi, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bidi.CloseSend()
		if m, err := bidi.Recv(); err != io.EOF || first(bidi.Trailer(), "x-count") != "0" {
			t.Errorf("bidi stream of no messages: got %v, %v, trailer %v; want EOF, x-count 0", m, err, bidi.Trailer())
		}
	})
	t.Run("4 MiB messages on a bidi stream", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			body := bytes.Repeat([]byte{byte('a' + i)}, 4<<20)
			if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !bytes.Equal(resp.GetPayload().GetBody(), body) {
				t.Fatalf("message %d: echoed %d bytes differ from the 4 MiB sent", i, len(resp.GetPayload().GetBody()))
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("after the last message: %v, want EOF", err)
		}
		if got := first(stream.Trailer(), "x-count"); got != "4" {
			t.Errorf("trailer x-count %q, want 4", got)
		}
	})
	t.Run("custom and binary metadata and trailers", func(t *testing.T) {
		bin := string([]byte{0, 1, 2, 0xfe, 0xff, '\n', 0x80})
		ctx := ctxFor(t, "x-behaviour", "echo-metadata",
			"x-echo-plain", "value with spaces", "x-echo-id-bin", bin, "x-echo-multi", "one", "x-echo-multi", "two")
		var header, trailer metadata.MD
		if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
			t.Fatal(err)
		}
		checkEcho(t, "unary", header, trailer, bin)
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatal(err)
		}
		h, _ := stream.Header()
		checkEcho(t, "bidi", h, stream.Trailer(), bin)
	})
	t.Run("status codes with Unicode messages", func(t *testing.T) {
		for _, tc := range []struct {
			code codes.Code
			msg  string
		}{
			{codes.NotFound, "plain ASCII"},
			{codes.InvalidArgument, "  leading and trailing spaces, a\ttab and a\nnewline  "},
			{codes.FailedPrecondition, "percent % signs %25 and non-ASCII: naïve café, Ελληνικά, 日本語"},
			{codes.ResourceExhausted, "non-BMP: 🦊🎉 𝄞 (U+1D11E) \U0010FFFD"},
			{codes.Aborted, "\r\n\t mixed 🙂 whitespace \u00a0\u2003 and 漢字 \t"},
			// grpc's interop test case special_status_message, verbatim.
			{codes.Unknown, "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"},
		} {
			echo := &testpb.EchoStatus{Code: int32(tc.code), Message: tc.msg}
			// A trailers-only answer...
			_, err := client.UnaryCall(ctxFor(t), &testpb.SimpleRequest{ResponseStatus: echo})
			if st, _ := status.FromError(err); st.Code() != tc.code || st.Message() != tc.msg {
				t.Errorf("unary: got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			// ...and trailers after a message.
			stream, err := client.StreamingOutputCall(ctxFor(t), &testpb.StreamingOutputCallRequest{
				ResponseParameters: []*testpb.ResponseParameters{{Size: 10}}, ResponseStatus: echo,
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("stream's message: %v", err)
			}
			_, err = stream.Recv()
			if st, _ := status.FromError(err); st.Code() != tc.code || st.Message() != tc.msg {
				t.Errorf("stream: got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		}
	})
	t.Run("deadline expires at the server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctxFor(t, "x-behaviour", "wait-for-deadline"), time.Second)
		defer cancel()
		deadline, _ := ctx.Deadline()
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("client got %v, want DEADLINE_EXCEEDED", err)
		}
		select {
		case got := <-w.grpcApp.ended(t.Name()):
			// The server's own deadline (grpc-timeout, passed on) and the
			// client's reset when its deadline passed (passed on as
			// RST_STREAM) race; either ends the server's context.
			if got.err != context.DeadlineExceeded && got.err != context.Canceled {
				t.Errorf("the server's context ended with %v, want its deadline or the client's cancel", got.err)
			}
			if off := got.deadline.Sub(deadline); got.deadline.IsZero() || off < -time.Second || off > time.Second {
				t.Errorf("the server's deadline is %v off the client's (zero: none): grpc-timeout not passed on", off)
			}
			t.Logf("the server's context ended with %v; its deadline %v after the client's", got.err, got.deadline.Sub(deadline))
		case <-time.After(30 * time.Second):
			t.Error("the server's context did not end within 30 s of the client's deadline")
		}
	})
	t.Run("cancel after the first response reaches the server", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctxFor(t, "x-behaviour", "cancel-after-first"))
		stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := stream.Recv(); err != nil || string(m.GetPayload().GetBody()) != "first" {
			t.Fatalf("first message: %v, %v", m, err)
		}
		cancel()
		if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
			t.Errorf("client after cancel: %v, want CANCELED", err)
		}
		select {
		case got := <-w.grpcApp.ended(t.Name()):
			if got.err != context.Canceled {
				t.Errorf("the server's context ended with %v, want Canceled", got.err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the server did not see the cancel within 30 s (its stream was not reset)")
		}
	})
	t.Run("unimplemented method and service", func(t *testing.T) {
		_, err := client.UnimplementedCall(ctxFor(t), &testpb.Empty{})
		if st, _ := status.FromError(err); st.Code() != codes.Unimplemented || st.Message() != "method UnimplementedCall not implemented" {
			t.Errorf("unimplemented method: %v, want UNIMPLEMENTED \"method UnimplementedCall not implemented\"", err)
		}
		_, err = testpb.NewUnimplementedServiceClient(cc).UnimplementedCall(ctxFor(t), &testpb.Empty{})
		if st, _ := status.FromError(err); st.Code() != codes.Unimplemented || st.Message() != "unknown service grpc.testing.UnimplementedService" {
			t.Errorf("unimplemented service: %v, want UNIMPLEMENTED \"unknown service grpc.testing.UnimplementedService\"", err)
		}
	})
}

// checkEcho checks that the server's echo of the x-echo-* metadata arrived
// in the headers and, renamed x-trail-*, in the trailers.
func checkEcho(t *testing.T, call string, header, trailer metadata.MD, bin string) {
	t.Helper()
	for _, c := range []struct {
		md     metadata.MD
		prefix string
	}{{header, "x-echo-"}, {trailer, "x-trail-"}} {
		want := map[string][]string{
			c.prefix + "plain":  {"value with spaces"},
			c.prefix + "id-bin": {bin},
			c.prefix + "multi":  {"one", "two"},
		}
		for k, v := range want {
			if got := c.md.Get(k); fmt.Sprint(got) != fmt.Sprint(v) {
				t.Errorf("%s: %s = %q, want %q", call, k, got, v)
			}
		}
	}
}
