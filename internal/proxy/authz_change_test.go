package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/authz"
)

// Policy changes under open connections: what a tightened policy closes
// (within 1 s), what it leaves alone (requests in flight on allowed
// traffic), and that loosening lets the next request through.

// TestTighteningClosesALongLivedOpaqueConnection: an allowed opaque
// connection carries bytes; once the policy no longer allows its client
// it is closed within 1 s, while a connection the policy still allows
// keeps working.
func TestTighteningClosesALongLivedOpaqueConnection(t *testing.T) {
	p := startAuthzProxy(t)
	p.setAll(webServer(frontendOnly, insideOnly))
	ctx := context.Background()
	doomed, err := p.meshed(t, frontendID, srcMeshed).dialOpaque(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer doomed.Close()
	kept, err := plainClient{p, srcInside}.dialOpaque(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	for _, c := range []net.Conn{doomed, kept} {
		if err := roundTrip(c, "before"); err != nil {
			t.Fatalf("before the change: %v", err)
		}
	}

	changed := time.Now()
	p.setAll(webServer(insideOnly))
	doomed.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = doomed.Read(make([]byte, 1))
	took := time.Since(changed)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || took > time.Second {
		t.Fatalf("the denied connection: read %v after %v, want closed within 1s", err, took)
	}
	t.Logf("closed %v after the policy changed", took)
	if err := roundTrip(kept, "after"); err != nil {
		t.Errorf("the still-allowed connection: %v", err)
	}
	if got := sumCounter(t, p, "tcp_close_total", map[string]string{"errno": "authz"}); got != 1 {
		t.Errorf("tcp_close_total{errno=authz} = %v, want 1", got)
	}
}

func roundTrip(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo differs: " + string(buf))
	}
	return nil
}

// TestTighteningDeniesAKeepAliveClientsNextRequestAndLooseningAllows: a
// keep-alive HTTP/1 client and an HTTP/2 mesh client, allowed, then
// denied on their next request once the policy no longer allows them,
// then allowed again once it does.
func TestTighteningDeniesAKeepAliveClientsNextRequestAndLooseningAllows(t *testing.T) {
	p := startAuthzProxy(t)
	p.setAll(webServer(frontendOnly, insideOnly))
	h1Client := plainClient{p, srcInside}.httpClient(t)
	mesh := p.meshed(t, frontendID, srcMeshed)
	h2Client := mesh.httpClient(t)
	status := func(c *http.Client) int {
		t.Helper()
		resp, err := c.Get("http://app/keepalive")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, step := range []struct {
		name   string
		policy *authz.Inbound
		h1, h2 int
	}{
		{"allowed", webServer(frontendOnly, insideOnly), 200, 200},
		{"tightened", webServer(), 403, 403},
		{"loosened", webServer(frontendOnly, insideOnly), 200, 200},
		{"tightened for one", webServer(frontendOnly), 403, 200},
	} {
		conn := mesh.last.Load()
		p.setAll(step.policy)
		if step.name == "tightened" {
			// The HTTP/2 connection is told GOAWAY and closed, within 1 s.
			select {
			case <-conn.ended:
			case <-time.After(time.Second):
				t.Errorf("tightened: the HTTP/2 connection of a client allowed nothing is still open after 1s")
			}
		}
		if got1, got2 := status(h1Client), status(h2Client); got1 != step.h1 || got2 != step.h2 {
			t.Errorf("%s: HTTP/1 %d, HTTP/2 %d; want %d, %d", step.name, got1, got2, step.h1, step.h2)
		}
	}
}

// TestTighteningDrainsHTTPConnectionsWithoutCuttingTheRequestInFlight: a
// keep-alive HTTP/1 connection whose client the policy stops allowing
// while a request is in flight gets that request's response (with
// Connection: close), then is closed; an idle one is closed at once.
func TestTighteningDrainsHTTPConnectionsWithoutCuttingTheRequestInFlight(t *testing.T) {
	p := startAuthzProxy(t)
	p.setAll(webServer(frontendOnly, insideOnly))
	ctx := context.Background()
	busy, err := dialFrom(ctx, srcInside, p.httpPort)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	idle, err := dialFrom(ctx, srcInside, p.httpPort)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleBr := bufio.NewReader(idle)
	io.WriteString(idle, "GET /first HTTP/1.1\r\nHost: app\r\n\r\n")
	if resp, err := http.ReadResponse(idleBr, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("before: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}

	io.WriteString(busy, "GET /block HTTP/1.1\r\nHost: app\r\n\r\n")
	<-p.web.arrived
	changed := time.Now()
	p.setAll(webServer(frontendOnly))
	// The idle connection is closed within 1 s.
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idleBr.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) || time.Since(changed) > time.Second {
		t.Errorf("idle connection: %v after %v, want closed within 1s", err, time.Since(changed))
	}
	// The request in flight is answered, and the connection closed after.
	// The pass that closed the idle connection drains the busy one too, in
	// whichever order: give it time to get there before the answer goes.
	time.Sleep(200 * time.Millisecond)
	close(p.web.release)
	busy.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(busy)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request in flight was cut: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "app:/block" || !resp.Close {
		t.Errorf("in flight: %d %q close=%v, want the application's 200 and Connection: close", resp.StatusCode, body, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want the connection closed", err)
	}
}

// TestTighteningClosesATunnelItNoLongerAllows: CONNECT and upgrade
// tunnels were authorized by their request; once the policy no longer
// allows that request, the tunnel is closed on both sides within 1 s.
func TestTighteningClosesATunnelItNoLongerAllows(t *testing.T) {
	for _, kind := range []string{"connect", "upgrade"} {
		t.Run(kind, func(t *testing.T) {
			p := startAuthzProxy(t)
			p.setAll(webServer(insideOnly))
			c, br := openTunnel(t, p.tunnelPort.String(), kind)
			if err := echo(c, br); err != nil {
				t.Fatalf("through the tunnel: %v", err)
			}
			changed := time.Now()
			p.setAll(webServer(frontendOnly))
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) || time.Since(changed) > time.Second {
				t.Fatalf("the tunnel: %v after %v, want closed within 1s", err, time.Since(changed))
			}
			select {
			case <-p.tunnelClosed:
			case <-time.After(time.Second):
				t.Errorf("the application's side of the tunnel is still open")
			}
		})
	}
}

// TestRequestsInFlightOnAllowedTrafficSurvivePolicyChanges: while the
// policy flips between allowing and denying another client, every request
// of the client it always allows succeeds, slow ones in flight included.
func TestRequestsInFlightOnAllowedTrafficSurvivePolicyChanges(t *testing.T) {
	p := startAuthzProxy(t)
	loose := webServer(frontendOnly, insideOnly)
	tight := webServer(frontendOnly)
	p.setAll(loose)
	h2Client := p.meshed(t, frontendID, srcMeshed).httpClient(t)
	grpcClient := p.meshed(t, frontendID, srcMeshed).grpcClient(t)
	flipped := plainClient{p, srcInside}.httpClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var sent, failed, flippedSent atomic.Int64
	var wg sync.WaitGroup
	// A client the flips allow and deny, whose connections are drained
	// while the others' requests are in flight.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			flippedSent.Add(1)
			if resp, err := flipped.Get("http://app/flipped"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	for range 2 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sent.Add(1)
				resp, err := h2Client.Get("http://app/slow")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("in flight: %v %v", err, resp)
					return
				}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sent.Add(1)
				if _, err := grpcClient.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
					failed.Add(1)
					t.Errorf("gRPC in flight: %v", err)
					return
				}
			}
		}()
	}
	flips := 0
	for ctx.Err() == nil {
		p.setAll(tight)
		time.Sleep(20 * time.Millisecond)
		p.setAll(loose)
		time.Sleep(20 * time.Millisecond)
		flips += 2
	}
	wg.Wait()
	t.Logf("%d requests, %d failed, over %d policy changes (and %d of a client allowed and denied in turn)",
		sent.Load(), failed.Load(), flips, flippedSent.Load())
	if sent.Load() < 20 {
		t.Errorf("only %d requests were sent", sent.Load())
	}
}
