package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// tapEventsPerSecond is the cap the skein-mtls-tap scenario's session
// asks for: the tap API's default, so that at the benchmark's rates the
// session runs at its cap and drops the rest.
const tapEventsPerSecond = 100

// deploySkeinMTLSTapped is skein-mtls with one tap session open on the
// server's proxy for the whole run, matching every request, as the
// controller opens one for `skein tap deploy/fortio`: what a tap at its
// cap costs the tapped traffic.
func deploySkeinMTLSTapped(ctx context.Context, tb *testbed) (*deployment, error) {
	dep, err := deploySkeinMTLS(ctx, tb)
	if err != nil {
		return dep, err
	}
	stop, err := tb.tapServer(ctx)
	if err != nil {
		return dep, fmt.Errorf("tapping the server's proxy: %w", err)
	}
	undo := dep.undo
	dep.undo = func(ctx context.Context) error {
		return errors.Join(stop(), undo(ctx))
	}
	return dep, nil
}

// tapServer opens Tap.Observe on the server's proxy from the ctl host with
// a controller certificate of the testbed's issuer, and reads the events
// until the returned stop is called; stop logs what the session saw.
func (tb *testbed) tapServer(ctx context.Context) (stop func() error, err error) {
	td := spiffeid.RequireTrustDomainFromString(benchTrustDomain)
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	cert, err := identitytest.IssueLeafFrom(tb.identityDir(), meshid.Controller(td), key)
	if err != nil {
		return nil, err
	}
	anchorsPEM, err := os.ReadFile(filepath.Join(tb.identityDir(), "ca.crt"))
	if err != nil {
		return nil, err
	}
	anchors, err := pki.ParseCertificates(anchorsPEM)
	if err != nil {
		return nil, err
	}
	serverID, err := spiffeid.FromString(tb.identityOf(tb.server))
	if err != nil {
		return nil, err
	}
	bundle := x509bundle.FromX509Authorities(td, anchors)
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The proxy's certificate names a SPIFFE ID, not a host.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, _, err := x509svid.ParseAndVerify(raw, bundle)
			if err == nil && id != serverID {
				err = fmt.Errorf("proxy certificate names %s, want %s", id, serverID)
			}
			return err
		},
	}
	conn, err := grpc.NewClient(fmt.Sprintf("%s:4191", tb.server.IP),
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return tb.ctl.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		return nil, err
	}
	sessionCtx, cancel := context.WithCancel(context.Background())
	stream, err := tappb.NewTapClient(conn).Observe(sessionCtx, &tappb.ObserveRequest{MaxEventsPerSecond: tapEventsPerSecond})
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	// Observe returns once the stream is open; the run's warm-up gives the
	// proxy time to register the session before anything is measured.
	var events, dropped atomic.Uint64
	done := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				done <- err
				return
			}
			events.Add(1)
			dropped.Add(ev.GetDropped())
		}
	}()
	return func() error {
		cancel()
		err := <-done
		conn.Close()
		tb.log.Info("tap session on the server's proxy ended", "events", events.Load(), "dropped", dropped.Load())
		if status.Code(err) == codes.Canceled {
			return nil
		}
		return fmt.Errorf("tap session: %w", err)
	}, nil
}
