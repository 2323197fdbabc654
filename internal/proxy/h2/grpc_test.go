package h2

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// testService is the upstream gRPC application of the tests.
type testService struct {
	testpb.UnimplementedTestServiceServer
	cancelled chan error // what the server saw when a call was abandoned
}

func echoMetadata(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	for _, k := range []string{"x-custom", "x-bin-bin"} {
		if v := md.Get(k); len(v) > 0 {
			out.Set(k, v...)
		}
	}
	grpc.SetHeader(ctx, out)
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t1"))
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	echoMetadata(ctx)
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-wait")) > 0 {
		<-ctx.Done()
		s.cancelled <- ctx.Err()
		return nil, ctx.Err()
	}
	if st := req.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.Code), st.Message)
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.ResponseSize)}}, nil
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	for _, p := range req.ResponseParameters {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.Size)}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testService) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	total := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

func (s *testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			select {
			case s.cancelled <- status.FromContextError(stream.Context().Err()).Err():
			default:
			}
			return err
		}
		size := int32(len(m.GetPayload().GetBody()))
		for _, p := range m.ResponseParameters {
			size = p.Size
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

// listen serves connections accepted on a loopback listener with serve
// until the test ends.
func listen(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func dialer(addr string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// proxyPair starts upstream gRPC server <- h2.Client <- h2.Server and
// returns the h2.Server's address.
func proxyPair(t testing.TB, svc *testService) (addr string, srv *Server, cl *Client) {
	t.Helper()
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	cl = NewClient(dialer(ln.Addr().String()), Config{}, nil)
	t.Cleanup(cl.Close)
	srv = NewServer(cl, Config{}, nil)
	addr = listen(t, func(c net.Conn) { srv.ServeConn(c, &stack.ConnInfo{Direction: "outbound"}) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return addr, srv, cl
}

func grpcClient(t testing.TB, addr string) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func TestGRPCThroughServerAndClient(t *testing.T) {
	svc := &testService{cancelled: make(chan error, 4)}
	addr, _, _ := proxyPair(t, svc)
	client := grpcClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("unary with metadata", func(t *testing.T) {
		md := metadata.Pairs("x-custom", "v 1", "x-bin-bin", string([]byte{0, 1, 2, 255}))
		var hdr, trl metadata.MD
		resp, err := client.UnaryCall(metadata.NewOutgoingContext(ctx, md), &testpb.SimpleRequest{ResponseSize: 10}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Payload.Body) != 10 {
			t.Fatalf("payload %d bytes, want 10", len(resp.Payload.Body))
		}
		if got := hdr.Get("x-custom"); len(got) != 1 || got[0] != "v 1" {
			t.Errorf("x-custom = %q", got)
		}
		if got := hdr.Get("x-bin-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 2, 255}) {
			t.Errorf("x-bin-bin = %q", got)
		}
		if got := trl.Get("x-trailer"); len(got) != 1 || got[0] != "t1" {
			t.Errorf("trailer x-trailer = %q", got)
		}
	})
	t.Run("4 MiB messages both ways", func(t *testing.T) {
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 4<<20 - 100, Payload: &testpb.Payload{Body: make([]byte, 4<<20-100)}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Payload.Body) != 4<<20-100 {
			t.Fatalf("payload %d bytes", len(resp.Payload.Body))
		}
	})
	t.Run("status with whitespace and non-BMP message", func(t *testing.T) {
		msg := "  no such emoji 🦄\t 𝄞 %  "
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: msg}})
		st, _ := status.FromError(err)
		if st.Code() != codes.NotFound || st.Message() != msg {
			t.Fatalf("got %v %q, want NotFound %q", st.Code(), st.Message(), msg)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		var params []*testpb.ResponseParameters
		for i := range 20 {
			params = append(params, &testpb.ResponseParameters{Size: int32(i * 1000)})
		}
		stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if len(m.Payload.Body) != i*1000 {
				t.Fatalf("message %d: %d bytes", i, len(m.Payload.Body))
			}
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
	t.Run("client streaming", func(t *testing.T) {
		stream, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for i := range 30 {
			want += i * 3000
			if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, i*3000)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if int(resp.AggregatedPayloadSize) != want {
			t.Fatalf("server saw %d bytes, want %d", resp.AggregatedPayloadSize, want)
		}
	})
	t.Run("bidi streaming", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, i*500)}}); err != nil {
				t.Fatal(err)
			}
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Payload.Body) != i*500 {
				t.Fatalf("echo %d: %d bytes", i, len(m.Payload.Body))
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	})
	t.Run("empty streams", func(t *testing.T) {
		out, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Recv(); err != io.EOF {
			t.Fatalf("server stream: %v", err)
		}
		in, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := in.CloseAndRecv(); err != nil || resp.AggregatedPayloadSize != 0 {
			t.Fatalf("client stream: %v %v", resp, err)
		}
		bidi, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bidi.CloseSend()
		if _, err := bidi.Recv(); err != io.EOF {
			t.Fatalf("bidi: %v", err)
		}
	})
	t.Run("deadline expires at the server", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-wait", "1"), 300*time.Millisecond)
		defer dcancel()
		_, err := client.UnaryCall(dctx, &testpb.SimpleRequest{})
		// The server's deadline (set from grpc-timeout on arrival) and the
		// client's RST_STREAM at its own deadline race, and so do the
		// server's answer and the client's timer: either way the server
		// must stop, and the client must end with one of the two.
		if got := <-svc.cancelled; !errors.Is(got, context.DeadlineExceeded) && !errors.Is(got, context.Canceled) {
			t.Fatalf("server saw %v, want its deadline exceeded or the call cancelled", got)
		}
		if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Canceled {
			t.Fatalf("client got %v, want DeadlineExceeded", err)
		}
	})
	t.Run("cancel after first response reaches the server", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		stream, err := client.FullDuplexCall(cctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		ccancel()
		select {
		case got := <-svc.cancelled:
			if status.Code(got) != codes.Canceled {
				t.Fatalf("server saw %v, want Canceled", got)
			}
		case <-ctx.Done():
			t.Fatal("the server never saw the cancel")
		}
	})
	t.Run("unimplemented", func(t *testing.T) {
		_, err := client.EmptyCall(ctx, &testpb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("got %v, want Unimplemented", err)
		}
		uc := testpb.NewUnimplementedServiceClient(grpcConnOf(t, addr))
		_, err = uc.UnimplementedCall(ctx, &testpb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("unknown service: got %v, want Unimplemented", err)
		}
	})
}

func grpcConnOf(t *testing.T, addr string) *grpc.ClientConn {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
