package controller

import (
	"context"
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/identity"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// withoutMeshCertificate are the only gRPC methods a client may call
// without a mesh client certificate: Certify, which a proxy calls to get
// its first one (the token it sends is what proves who it is). Every other
// method, including any registered later, requires one.
var withoutMeshCertificate = map[string]bool{
	identitypb.Identity_Certify_FullMethodName: true,
}

// Keepalive policy of the gRPC port. Clients may not ping more often than
// every minPingInterval (more is answered with GOAWAY); the server pings a
// connection silent for pingAfter and closes it if the ping is not
// answered within pingTimeout, so dead proxies do not hold streams; a
// connection with no call at all for maxIdle is closed (the proxy dials
// again when it needs to).
const (
	minPingInterval = 10 * time.Second
	pingAfter       = 30 * time.Second
	pingTimeout     = 10 * time.Second
	maxIdle         = 5 * time.Minute
)

// newGRPCServer is the controller's gRPC server over tlsConfig: mesh
// client certificates required (but for Certify), streams per connection
// capped, keepalive enforced.
func newGRPCServer(cfg Config, tlsConfig *tls.Config) *grpc.Server {
	return grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.MaxConcurrentStreams(cfg.MaxStreamsPerConnection),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             minPingInterval,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: maxIdle,
			Time:              pingAfter,
			Timeout:           pingTimeout,
		}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := requireMeshPeer(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := requireMeshPeer(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	)
}

// requireMeshPeer refuses a call without a mesh client certificate, unless
// method is one of withoutMeshCertificate. The answer says what is missing
// and nothing else.
func requireMeshPeer(ctx context.Context, method string) error {
	if withoutMeshCertificate[method] {
		return nil
	}
	if _, err := identity.MeshPeer(ctx); err != nil {
		return status.Error(codes.Unauthenticated, identity.ErrNoMeshPeer.Error())
	}
	return nil
}
