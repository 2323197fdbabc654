// Package web is the demo's front end: an HTTP/1.1 server with a small page
// at / and a JSON API that calls the emoji and voting gRPC services. It
// speaks plain HTTP and h2c gRPC; in the mesh the sidecars add mTLS and
// balance each call across the back ends' replicas.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/skeinmesh/skein/proto/demo"
)

// Defaults: the demo's service names in the local mesh.
const (
	DefaultAddr       = ":8080"
	DefaultEmojiAddr  = "emoji.demo.svc.cluster.local:8080"
	DefaultVotingAddr = "voting.demo.svc.cluster.local:8080"
)

// shutdownTimeout bounds how long in-flight requests may take once the
// context ends.
const shutdownTimeout = 5 * time.Second

// Config says where web listens and where its back ends are.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string
	// EmojiAddr and VotingAddr are the back ends' host:port. They are
	// dialled as given (grpc's passthrough resolver): the host resolves to
	// one address, the service's, and a single connection carries every
	// call — balancing each call is the mesh's job.
	EmojiAddr  string
	VotingAddr string
}

// DefaultConfig is the configuration of the demo in the local mesh.
func DefaultConfig() Config {
	return Config{Addr: DefaultAddr, EmojiAddr: DefaultEmojiAddr, VotingAddr: DefaultVotingAddr}
}

// Validate checks that every address is host:port.
func (c Config) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"addr", c.Addr}, {"emoji-addr", c.EmojiAddr}, {"voting-addr", c.VotingAddr},
	} {
		if _, _, err := net.SplitHostPort(f.value); err != nil {
			return fmt.Errorf("%s %q: want host:port: %w", f.name, f.value, err)
		}
	}
	return nil
}

// ListenAndServe serves web on cfg.Addr until ctx ends.
func ListenAndServe(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening for HTTP: %w", err)
	}
	return Serve(ctx, lis, cfg)
}

// Serve serves web on lis (cfg.Addr is not used) until ctx ends, then
// finishes in-flight requests and returns nil. It closes lis.
func Serve(ctx context.Context, lis net.Listener, cfg Config) error {
	emojiConn, err := dial(cfg.EmojiAddr)
	if err != nil {
		lis.Close()
		return fmt.Errorf("emoji service: %w", err)
	}
	defer emojiConn.Close()
	votingConn, err := dial(cfg.VotingAddr)
	if err != nil {
		lis.Close()
		return fmt.Errorf("voting service: %w", err)
	}
	defer votingConn.Close()

	srv := &http.Server{
		Handler:           NewHandler(pb.NewEmojiClient(emojiConn), pb.NewVotingClient(votingConn)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	slog.Info("serving HTTP", "addr", lis.Addr().String(), "emoji", cfg.EmojiAddr, "voting", cfg.VotingAddr)

	select {
	case err := <-served:
		return fmt.Errorf("serving HTTP on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving HTTP on %s: %w", lis.Addr(), err)
	}
	return nil
}

// dial makes a client connection to addr without resolving it through
// grpc's DNS resolver, which would open one connection per address; the
// mesh balances the calls of one connection.
func dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialling %s: %w", addr, err)
	}
	return conn, nil
}
