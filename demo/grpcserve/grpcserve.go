// Package grpcserve runs a demo gRPC service on a listener until its context
// ends: the lifecycle shared by the emoji and voting services. Plain h2c, no
// TLS: in the mesh the sidecars add mTLS.
package grpcserve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
)

// drainTimeout bounds how long in-flight calls may take once the context
// ends; after it they are cut off.
const drainTimeout = 5 * time.Second

// Serve registers services with register on a new gRPC server and serves
// lis until ctx ends, then drains in-flight calls and returns nil. It closes
// lis.
func Serve(ctx context.Context, lis net.Listener, register func(grpc.ServiceRegistrar)) error {
	srv := grpc.NewServer()
	register(srv)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	slog.Info("serving gRPC", "addr", lis.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("serving gRPC on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(drainTimeout):
		srv.Stop()
		<-stopped
	}
	<-served
	return nil
}

// Listen listens on addr and serves as Serve does.
func Listen(ctx context.Context, addr string, register func(grpc.ServiceRegistrar)) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for gRPC: %w", err)
	}
	return Serve(ctx, lis, register)
}
