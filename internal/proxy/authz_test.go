package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/proxyerror"
	"github.com/skeinmesh/skein/internal/routes"
)

// Loopback sources: unmeshed clients inside the authorized network come
// from 127.0.0.1, those outside from 127.0.0.2; meshed clients from
// 127.0.0.3, outside it too, so that only their identity can allow them.
const (
	srcInside  = "127.0.0.1"
	srcOutside = "127.0.0.2"
	srcMeshed  = "127.0.0.3"
)

var (
	frontendOnly = authz.Authorization{Name: "shop/frontend", MeshTLS: &authz.MeshTLS{Identities: []string{frontendID}}}
	insideOnly   = authz.Authorization{Name: "shop/inside", Networks: []authz.Network{{
		Prefix: netip.MustParsePrefix("127.0.0.0/8"),
		Except: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("127.0.0.3/32")},
	}}}
)

// webServer denies what its two authorizations do not allow.
func webServer(authorizations ...authz.Authorization) *authz.Inbound {
	return &authz.Inbound{Server: "shop/web", Default: authz.Deny, Authorizations: authorizations}
}

// TestInboundPolicyMatrix: a meshed client with the allowed identity, one
// with another identity, an unmeshed client inside the authorized network
// and one outside it, each over HTTP, gRPC and opaque TCP. Denied HTTP is
// 403 (the reason to meshed clients only), denied gRPC PERMISSION_DENIED,
// a denied opaque connection is closed before the application sees a
// connection or a byte; every decision is counted.
func TestInboundPolicyMatrix(t *testing.T) {
	p := startAuthzProxy(t)
	p.setAll(webServer(frontendOnly, insideOnly))
	type caller interface {
		httpClient(*testing.T) *http.Client
		grpcClient(*testing.T) testpb.TestServiceClient
		dialOpaque(context.Context) (net.Conn, error)
	}
	for _, c := range []struct {
		name    string
		client  caller
		meshed  bool
		allowed bool
		authz   string
	}{
		{"meshed, allowed identity", p.meshed(t, frontendID, srcMeshed), true, true, "shop/frontend"},
		{"meshed, other identity", p.meshed(t, batchID, srcMeshed), true, false, ""},
		{"unmeshed, inside the network", plainClient{p, srcInside}, false, true, "shop/inside"},
		{"unmeshed, outside the network", plainClient{p, srcOutside}, false, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			webBefore, grpcBefore := p.web.total(), len(p.grpcApp.calls())
			accepted, bytes := p.opaque.accepted.Load(), p.opaque.bytes.Load()

			// HTTP
			resp, err := c.client.httpClient(t).Get("http://app/hello")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			why := resp.Header.Get(proxyerror.Header)
			switch {
			case c.allowed && (resp.StatusCode != 200 || string(body) != "app:/hello"):
				t.Errorf("HTTP: %d %q, want the application's 200", resp.StatusCode, body)
			case !c.allowed && resp.StatusCode != 403:
				t.Errorf("HTTP: %d, want 403", resp.StatusCode)
			case !c.allowed && c.meshed && (!strings.Contains(why, "Server shop/web") || !strings.Contains(why, "no authorization matched")):
				t.Errorf("HTTP: %s %q, want the Server named and that no authorization matched", proxyerror.Header, why)
			case !c.allowed && !c.meshed && (why != "" || string(body) != "Forbidden\n"):
				t.Errorf("HTTP: an unmeshed client was told %q, body %q", why, body)
			}

			// gRPC
			_, err = c.client.grpcClient(t).UnaryCall(context.Background(), &testpb.SimpleRequest{})
			if got := status.Code(err); c.allowed && got != codes.OK || !c.allowed && got != codes.PermissionDenied {
				t.Errorf("gRPC: %v, want allowed=%v", err, c.allowed)
			}
			if !c.allowed && c.meshed && !strings.Contains(status.Convert(err).Message(), "Server shop/web") {
				t.Errorf("gRPC: message %q does not name the Server", status.Convert(err).Message())
			}
			if !c.allowed && !c.meshed && status.Convert(err).Message() != "Forbidden" {
				t.Errorf("gRPC: an unmeshed client was told %q", status.Convert(err).Message())
			}

			// opaque TCP
			echoed, err := opaqueExchange(c.client.dialOpaque, "ping")
			if c.allowed && (err != nil || echoed != "ping") {
				t.Errorf("opaque: got %q, %v; want the echo", echoed, err)
			}
			if !c.allowed && err == nil {
				t.Errorf("opaque: got %q, want the connection closed", echoed)
			}

			// What reached the application.
			wantWeb, wantGRPC := webBefore, grpcBefore
			wantAccepted, wantBytes := accepted, bytes
			if c.allowed {
				wantWeb, wantGRPC, wantAccepted, wantBytes = webBefore+1, grpcBefore+1, accepted+1, bytes+4
			}
			if p.web.total() != wantWeb || len(p.grpcApp.calls()) != wantGRPC {
				t.Errorf("the application got %d HTTP and %d gRPC requests, want %d and %d",
					p.web.total(), len(p.grpcApp.calls()), wantWeb, wantGRPC)
			}
			if p.opaque.accepted.Load() != wantAccepted || p.opaque.bytes.Load() != wantBytes {
				t.Errorf("the opaque application accepted %d connections and got %d bytes, want %d and %d",
					p.opaque.accepted.Load(), p.opaque.bytes.Load(), wantAccepted, wantBytes)
			}
		})
	}
	// Counted with who decided.
	for _, want := range []struct {
		name   string
		labels map[string]string
		n      float64
	}{
		{"inbound_http_authz_allow_total", map[string]string{"srv_name": "shop/web", "authz_name": "shop/frontend", "client_id": frontendID}, 2}, // HTTP and gRPC
		{"inbound_http_authz_allow_total", map[string]string{"srv_name": "shop/web", "authz_name": "shop/inside", "client_id": ""}, 2},
		{"inbound_http_authz_deny_total", map[string]string{"srv_name": "shop/web", "client_id": batchID}, 2},
		{"inbound_tcp_authz_allow_total", map[string]string{"srv_name": "shop/web", "authz_name": "shop/frontend", "tls": "true"}, 1},
		{"inbound_tcp_authz_deny_total", map[string]string{"srv_name": "shop/web", "client_id": ""}, 1},
		{"inbound_tcp_authz_deny_total", map[string]string{"srv_name": "shop/web", "client_id": batchID}, 1},
	} {
		if got := sumCounter(t, p, want.name, want.labels); got != want.n {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.n)
		}
	}
	if logs := p.logs.String(); !strings.Contains(logs, "request denied by inbound policy") || !strings.Contains(logs, "connection denied by inbound policy") {
		t.Errorf("no denial logged:\n%s", logs)
	}
}

// sumCounter adds up the series of name that have these labels.
func sumCounter(t *testing.T, p *authzProxy, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := p.reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// opaqueExchange sends msg on a new opaque connection and reads the echo;
// an error means the connection was closed (or failed) first.
func opaqueExchange(dial func(context.Context) (net.Conn, error), msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

// TestPerRoutePolicyAllowsPublicAndDeniesAdmin: the same client may GET
// /public (its route authorizes it) but not /admin (nothing does); a path
// no route matches is 404.
func TestPerRoutePolicyAllowsPublicAndDeniesAdmin(t *testing.T) {
	p := startAuthzProxy(t)
	prefix := func(v string) []routes.Match {
		return []routes.Match{{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: v}, Method: "GET"}}
	}
	p.setAll(&authz.Inbound{Server: "shop/web", Default: authz.Deny, Routes: []authz.Route{
		{Name: "shop/public", Matches: prefix("/public"), Authorizations: []authz.Authorization{frontendOnly}},
		{Name: "shop/admin", Matches: prefix("/admin")},
	}})
	client := p.meshed(t, frontendID, srcMeshed).httpClient(t)
	for _, c := range []struct {
		path   string
		status int
	}{{"/public/index", 200}, {"/admin", 403}, {"/elsewhere", 404}} {
		resp, err := client.Get("http://app" + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("GET %s: %d, want %d (%s)", c.path, resp.StatusCode, c.status, resp.Header.Get(proxyerror.Header))
		}
	}
	if p.web.count("/public/index") != 1 || p.web.count("/admin") != 0 || p.web.count("/elsewhere") != 0 {
		t.Errorf("the application got %v, want /public/index only", p.web.hits)
	}
	if got := sumCounter(t, p, "inbound_http_authz_allow_total", map[string]string{"route_name": "shop/public", "authz_name": "shop/frontend"}); got != 1 {
		t.Errorf("allow{route_name=shop/public} = %v, want 1", got)
	}
	if got := sumCounter(t, p, "inbound_http_authz_deny_total", map[string]string{"route_name": "shop/admin"}); got != 1 {
		t.Errorf("deny{route_name=shop/admin} = %v, want 1", got)
	}
}

// TestAuditModeAllowsAndCountsWouldBeDenials: under audit, what the
// policy would deny reaches the application, counted with authz_name
// "audit" and logged with the Server named.
func TestAuditModeAllowsAndCountsWouldBeDenials(t *testing.T) {
	p := startAuthzProxy(t)
	p.setAll(&authz.Inbound{Server: "shop/web", Default: authz.Audit, Authorizations: []authz.Authorization{frontendOnly}})
	resp, err := plainClient{p, srcOutside}.httpClient(t).Get("http://app/audited")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || p.web.count("/audited") != 1 {
		t.Fatalf("audit: %d, application got %d; want the request through", resp.StatusCode, p.web.count("/audited"))
	}
	if echoed, err := opaqueExchange(p.meshed(t, batchID, srcMeshed).dialOpaque, "tcp"); err != nil || echoed != "tcp" {
		t.Fatalf("audit, opaque: %q, %v", echoed, err)
	}
	if got := sumCounter(t, p, "inbound_http_authz_allow_total", map[string]string{"srv_name": "shop/web", "authz_name": "audit"}); got != 1 {
		t.Errorf("allow{authz_name=audit} = %v, want 1", got)
	}
	if got := sumCounter(t, p, "inbound_tcp_authz_allow_total", map[string]string{"srv_name": "shop/web", "authz_name": "audit", "client_id": batchID}); got != 1 {
		t.Errorf("tcp allow{authz_name=audit} = %v, want 1", got)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "audit: request allowed that the policy would deny") || !strings.Contains(logs, "server=shop/web") {
		t.Errorf("audit not logged with the Server named:\n%s", logs)
	}
}

// TestProbePathAllowedUnderDeny: a kubelet probe's GET passes a port whose
// policy denies everyone else.
func TestProbePathAllowedUnderDeny(t *testing.T) {
	p := startAuthzProxy(t)
	p.setAll(&authz.Inbound{Server: "shop/web", Default: authz.Deny, ProbePaths: []string{"/ready"}})
	client := plainClient{p, srcOutside}.httpClient(t)
	for path, want := range map[string]int{"/ready": 200, "/other": 403} {
		resp, err := client.Get("http://app" + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if got := sumCounter(t, p, "inbound_http_authz_allow_total", map[string]string{"authz_name": "probe"}); got != 1 {
		t.Errorf("allow{authz_name=probe} = %v, want 1", got)
	}
}

// TestNoPolicyFailsClosed: a port the controller has said nothing about
// yet is denied, HTTP and opaque alike.
func TestNoPolicyFailsClosed(t *testing.T) {
	p := startAuthzProxy(t)
	resp, err := plainClient{p, srcInside}.httpClient(t).Get("http://app/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || p.web.total() != 0 {
		t.Errorf("no policy: %d, want 403", resp.StatusCode)
	}
}

// TestInboundDefaultPoliciesThroughTheProxy: on a port no Server owns,
// each default policy decides for a meshed client outside the cluster
// networks, a meshed one inside, and unmeshed ones inside and outside,
// over HTTP, gRPC and opaque TCP alike.
func TestInboundDefaultPoliciesThroughTheProxy(t *testing.T) {
	p := startAuthzProxy(t)
	type caller interface {
		httpClient(*testing.T) *http.Client
		grpcClient(*testing.T) testpb.TestServiceClient
		dialOpaque(context.Context) (net.Conn, error)
	}
	clients := []struct {
		name   string
		client caller
	}{
		{"meshed-out", p.meshed(t, frontendID, srcMeshed)},
		{"meshed-in", p.meshed(t, batchID, srcInside)},
		{"unmeshed-in", plainClient{p, srcInside}},
		{"unmeshed-out", plainClient{p, srcOutside}},
	}
	allowed := map[authz.DefaultPolicy]string{
		authz.AllUnauthenticated:     "meshed-out meshed-in unmeshed-in unmeshed-out",
		authz.AllAuthenticated:       "meshed-out meshed-in",
		authz.ClusterUnauthenticated: "meshed-in unmeshed-in",
		authz.ClusterAuthenticated:   "meshed-in",
		authz.Deny:                   "",
		authz.Audit:                  "meshed-out meshed-in unmeshed-in unmeshed-out",
	}
	cluster := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for policy, who := range allowed {
		p.setAll(&authz.Inbound{Default: policy, ClusterNetworks: cluster})
		for _, c := range clients {
			want := strings.Contains(" "+who+" ", " "+c.name+" ")
			resp, err := c.client.httpClient(t).Get("http://app/default")
			if err != nil {
				t.Fatalf("%s, %s: %v", policy, c.name, err)
			}
			resp.Body.Close()
			if got := resp.StatusCode == 200; got != want || !want && resp.StatusCode != 403 {
				t.Errorf("%s, %s, HTTP: %d, want allowed=%v", policy, c.name, resp.StatusCode, want)
			}
			_, err = c.client.grpcClient(t).UnaryCall(context.Background(), &testpb.SimpleRequest{})
			if got := status.Code(err); want && got != codes.OK || !want && got != codes.PermissionDenied {
				t.Errorf("%s, %s, gRPC: %v, want allowed=%v", policy, c.name, err, want)
			}
			accepted := p.opaque.accepted.Load()
			_, err = opaqueExchange(c.client.dialOpaque, "x")
			if got := err == nil; got != want || !want && p.opaque.accepted.Load() != accepted {
				t.Errorf("%s, %s, opaque: %v (application accepted %d more), want allowed=%v",
					policy, c.name, err, p.opaque.accepted.Load()-accepted, want)
			}
		}
	}
}
