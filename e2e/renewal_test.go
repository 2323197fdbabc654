package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// TestCertificatesOutliveAControllerOutageOfJustUnderHalfTheirLife stops
// the controller just before the client proxy's 50% renewal point of a
// 40 s certificate and keeps it down for 17 s (42% of the life). Every
// proxy must hold a valid certificate and be ready all along, calls must
// keep succeeding, and the client must renew once the controller is back.
// With renewal at 70% of the life left, the first renewal falls inside the
// outage and the retries after it come too late.
func TestCertificatesOutliveAControllerOutageOfJustUnderHalfTheirLife(t *testing.T) {
	const lifetime, outage = 40 * time.Second, 17 * time.Second
	cp := newControlPlane(t, lifetime)
	proxies := []*netns.Host{cp.client, cp.servers[0], cp.servers[1]}
	stop := make(chan struct{})
	load, wg := runSteadyLoad(t, cp.client, fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC), 50, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}()

	// The client's current certificate: renewal is due at half its life,
	// counted from when the proxy got it (NotAfter minus the lifetime).
	first := proxyCert(t, cp.client)
	notAfter := parseTime(t, first.NotAfter)
	halfway := notAfter.Add(-lifetime / 2)
	if time.Until(halfway) < 2*time.Second {
		// Too close to call: wait for the next certificate.
		if !waitFor(lifetime, func() bool { return proxyCert(t, cp.client).Serial != first.Serial }) {
			t.Fatal("the client's certificate was not renewed within its lifetime")
		}
		first = proxyCert(t, cp.client)
		notAfter = parseTime(t, first.NotAfter)
		halfway = notAfter.Add(-lifetime / 2)
	}
	time.Sleep(time.Until(halfway.Add(-time.Second)))
	down := time.Now()
	cp.controller.stop() // it refuses connections at once, then drains
	t.Logf("controller stopped %v before the client's renewal point; its certificate expires in %v",
		halfway.Sub(down).Round(time.Millisecond), time.Until(notAfter).Round(time.Millisecond))

	// While it is down and until the client has renewed after its return,
	// every proxy holds a certificate valid now and is ready.
	check := func() {
		for _, h := range proxies {
			ci := proxyCert(t, h)
			if exp := parseTime(t, ci.NotAfter); !time.Now().Before(exp) {
				t.Fatalf("%s's proxy holds a certificate that expired at %s, %v after the controller stopped",
					h.Name, exp.Format(time.RFC3339), time.Since(down).Round(time.Millisecond))
			}
			if code, body := proxyReady(t, h); code != http.StatusOK {
				t.Fatalf("%s's proxy not ready %v after the controller stopped: %d %s",
					h.Name, time.Since(down).Round(time.Millisecond), code, body)
			}
		}
	}
	for time.Since(down) < outage {
		check()
		time.Sleep(250 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cp.startController(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("controller ready again after %v down, %v before the client's certificate expires",
		back.Sub(down).Round(time.Millisecond), notAfter.Sub(back).Round(time.Millisecond))
	for proxyCert(t, cp.client).Serial == first.Serial {
		check()
		if time.Now().After(notAfter.Add(5 * time.Second)) {
			t.Fatal("the client never renewed its certificate")
		}
		time.Sleep(250 * time.Millisecond)
	}
	renewed := time.Now()
	check()
	t.Logf("client renewed %v after the controller's return, %v before the old certificate expired",
		renewed.Sub(back).Round(time.Millisecond), notAfter.Sub(renewed).Round(time.Millisecond))

	close(stop)
	wg.Wait()
	if f := load.failed(); len(f) > 0 {
		t.Errorf("%d of %d calls failed through the outage; first: %v", len(f), load.calls.Load(), f[0])
	}
	t.Logf("%d calls, none failed", load.calls.Load())
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("parsing time %q: %v", s, err)
	}
	return at
}

// proxyReady reads the /ready of h's proxy.
func proxyReady(t *testing.T, h *netns.Host) (int, string) {
	t.Helper()
	resp, err := httpClient(h).Get("http://127.0.0.1:4191/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, string(body)
}
