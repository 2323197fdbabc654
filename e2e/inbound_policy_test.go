package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/proxy/authzclient"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// The real controller, reading its manifest directory, serves the echo
// Workload's inbound policy to a proxy with echo's identity: a Server and
// an AuthorizationPolicy in the manifests reach it; a broken edit (a bad
// CIDR) is refused naming the file, object and field while the last good
// policy stays; a client with another identity is refused echo's policy.
// The Server's accessPolicy is all-unauthenticated so that the shared
// control plane's other tests are not denied anything.
func TestControllerServesInboundPolicyToItsOwnWorkloadOnly(t *testing.T) {
	cp := getControlPlane(t)
	ctlID := spiffeid.RequireFromString(controllerID)
	file := filepath.Join(cp.manifests, "authz.yaml")
	t.Cleanup(func() { os.Remove(file) })
	write := func(cidr string) {
		t.Helper()
		doc := fmt.Sprintf(`apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: echo-http, namespace: %[1]s}
spec: {podSelector: {matchLabels: {app: echo}}, port: %[2]d, accessPolicy: all-unauthenticated}
---
apiVersion: policy.skein.io/v1alpha1
kind: NetworkAuthentication
metadata: {name: lan, namespace: %[1]s}
spec: {networks: [{cidr: %[3]q}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: echo-lan, namespace: %[1]s}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: echo-http}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: NetworkAuthentication, name: lan}]
`, echoNamespace, cpPortHTTP, cidr)
		tmp := filepath.Join(cp.dir, "authz.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}

	echo := cp.certifyFrom(t, cp.plain, "spiffe://cluster.local/ns/"+echoNamespace+"/sa/echo")
	conn := cp.dialController(t, cp.plain, echo.ClientTLS(ctlID, []string{"h2"}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := authzclient.New(ctx, conn, authzclient.Options{Namespace: echoNamespace, Pod: "echo-0", Workload: "echo",
		Log: slog.New(slog.DiscardHandler), WaitFirst: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitNetwork := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			p, err := client.Inbound(ctx, cpPortHTTP)
			if err == nil && p.Server == echoNamespace+"/echo-http" && len(p.Authorizations) == 1 &&
				len(p.Authorizations[0].Networks) == 1 && p.Authorizations[0].Networks[0].Prefix.String() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("inbound policy of echo-0:%d: %+v, %v; want Server echo-http allowing %s", cpPortHTTP, p, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	write("10.0.0.0/8")
	waitNetwork("10.0.0.0/8")

	logText := func() string { b, _ := os.ReadFile(cp.controller.log); return string(b) }
	refusals := strings.Count(logText(), "manifests invalid")
	write("10.0.0.0/99")
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logText(), "manifests invalid") == refusals {
		if time.Now().After(deadline) {
			t.Fatalf("the controller did not refuse the broken NetworkAuthentication:\n%s", cp.controller.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	last := logText()[strings.LastIndex(logText(), "manifests invalid"):]
	last, _, _ = strings.Cut(last, "\n")
	for _, want := range []string{"authz.yaml", "NetworkAuthentication test/lan", "spec.networks[0].cidr", "is not a CIDR"} {
		if !strings.Contains(last, want) {
			t.Errorf("refusal %q does not name %q", last, want)
		}
	}
	waitNetwork("10.0.0.0/8") // the last good

	write("192.168.0.0/16")
	waitNetwork("192.168.0.0/16")

	// The client workload may not read echo's policy.
	other := cp.certifyFrom(t, cp.plain, "spiffe://cluster.local/ns/"+echoNamespace+"/sa/client")
	stream, err := policypb.NewPolicyClient(cp.dialController(t, cp.plain, other.ClientTLS(ctlID, []string{"h2"}))).
		WatchInbound(ctx, &policypb.InboundRequest{Namespace: echoNamespace, Pod: "echo-0", Workload: "echo", Port: cpPortHTTP})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("client asking for echo's inbound policy: %v, want PERMISSION_DENIED", err)
	}
	var st interface{ GRPCStatus() *status.Status }
	if errors.As(err, &st) && !strings.Contains(st.GRPCStatus().Message(), "is not the identity of") {
		t.Errorf("refusal message %q", st.GRPCStatus().Message())
	}
}
