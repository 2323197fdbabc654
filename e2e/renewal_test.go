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

// TestCertificatesOutliveControllerOutagesOfJustUnderHalfTheirLife stops
// the controller twice for 17 s, 42% of the life of 40 s certificates.
// Every proxy must hold a valid certificate and be ready all along, and
// calls must keep succeeding.
//
// The first outage begins just before the client proxy's renewal point
// (half the life): the worst moment, when the certificate held has only
// half its life left; the client must renew after the controller's return
// and before it expires. The second begins at 60% of the life of the
// client's certificate and lasts past its expiry: a proxy that renewed at
// half the life is long done; one that waits until 70% (as before) holds an
// expired certificate at the end of it.
func TestCertificatesOutliveControllerOutagesOfJustUnderHalfTheirLife(t *testing.T) {
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

	// check fails the test unless every proxy holds a certificate valid
	// now and is ready.
	check := func(down time.Time) {
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
	// controllerOutage stops the controller at `at` for `outage`, checking
	// the proxies all along, and returns when it is ready again.
	controllerOutage := func(at time.Time) (down, back time.Time) {
		time.Sleep(time.Until(at))
		down = time.Now()
		cp.controller.stop() // it refuses connections at once, then drains
		for time.Since(down) < outage {
			check(down)
			time.Sleep(250 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cp.startController(ctx); err != nil {
			t.Fatal(err)
		}
		return down, time.Now()
	}

	// The client's certificate: renewal is due at half its life, counted
	// from when the proxy got it (NotAfter minus the lifetime).
	first := proxyCert(t, cp.client)
	notAfter := parseTime(t, first.NotAfter)
	if time.Until(notAfter.Add(-lifetime/2)) < 2*time.Second {
		// Too close to call: wait for the next certificate.
		if !waitFor(lifetime, func() bool { return proxyCert(t, cp.client).Serial != first.Serial }) {
			t.Fatal("the client's certificate was not renewed within its lifetime")
		}
		first = proxyCert(t, cp.client)
		notAfter = parseTime(t, first.NotAfter)
	}

	down, back := controllerOutage(notAfter.Add(-lifetime/2 - time.Second))
	t.Logf("outage 1: controller down at %v of the client's certificate's life, ready again %v before it expires (%v down)",
		lifetime-notAfter.Sub(down).Round(time.Millisecond), notAfter.Sub(back).Round(time.Millisecond), back.Sub(down).Round(time.Millisecond))
	for proxyCert(t, cp.client).Serial == first.Serial {
		check(down)
		if time.Now().After(notAfter.Add(5 * time.Second)) {
			t.Fatal("the client never renewed its certificate")
		}
		time.Sleep(250 * time.Millisecond)
	}
	renewed := time.Now()
	check(down)
	t.Logf("outage 1: client renewed %v after the controller's return, %v before the old certificate expired",
		renewed.Sub(back).Round(time.Millisecond), notAfter.Sub(renewed).Round(time.Millisecond))

	second := proxyCert(t, cp.client)
	notAfter = parseTime(t, second.NotAfter)
	down, back = controllerOutage(notAfter.Add(-lifetime * 4 / 10))
	check(down)
	t.Logf("outage 2: controller down at %v of the life of the client's certificate, ready again %v after it expired",
		lifetime-notAfter.Sub(down).Round(time.Millisecond), back.Sub(notAfter).Round(time.Millisecond))

	close(stop)
	wg.Wait()
	if f := load.failed(); len(f) > 0 {
		t.Errorf("%d of %d calls failed through the outages; first: %v", len(f), load.calls.Load(), f[0])
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
