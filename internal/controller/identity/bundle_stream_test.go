package identity_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/pki"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

func TestTrustBundleStreamPushesChangesAndCountsReports(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctrl := identitytest.Start(t, identitytest.Options{Registerer: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := ctrl.Client.WatchTrustBundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetTrustAnchors()) != 1 || !bytes.Equal(first.GetTrustAnchors()[0], ctrl.Anchor.Raw) {
		t.Fatalf("first bundle's anchors are not the controller's one anchor")
	}

	fp := pki.Fingerprint(ctrl.Anchor)
	if err := stream.Send(&identitypb.TrustReport{TrustedAnchors: []string{fp, strings.Repeat("f", 64)}, CertificateAnchor: fp}); err != nil {
		t.Fatal(err)
	}
	want := identity.TrustSummary{Proxies: 1, Anchors: []identity.AnchorSummary{{Fingerprint: fp, Issuer: true, Trusting: 1, Certificates: 1}}}
	identitytest.Eventually(t, 10*time.Second, func() error {
		if got := ctrl.Service.TrustSummary(); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("summary %+v, want %+v (an anchor the controller does not have is not counted)", got, want)
		}
		return nil
	})
	// The same summary is on the controller's /metrics, for the CLI to add
	// up over replicas.
	if got := trustFromMetrics(t, reg); !reflect.DeepEqual(got, want) {
		t.Errorf("summary read from the metrics %+v, want %+v", got, want)
	}
	if got := identity.MergeTrustSummaries(want, want); got.Proxies != 2 || got.Anchors[0].Trusting != 2 || got.Anchors[0].Certificates != 2 || !got.Anchors[0].Issuer {
		t.Errorf("two replicas' summaries add up to %+v", got)
	}

	// A new issuer is pushed at once.
	issuer := ctrl.WriteIssuer(t, ctrl.Anchor, ctrl.AnchorKey)
	next, err := stream.Recv()
	if err != nil {
		t.Fatalf("waiting for the new issuer: %v", err)
	}
	if !bytes.Equal(next.GetIssuerCertificate(), issuer.Raw) {
		t.Error("the new issuer was not pushed")
	}

	// A report past the bounds ends the stream, and the proxy is no longer counted.
	if err := stream.Send(&identitypb.TrustReport{TrustedAnchors: make([]string, 9)}); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("oversized report: %v, want InvalidArgument", err)
	}
	identitytest.Eventually(t, 10*time.Second, func() error {
		if got := ctrl.Service.TrustSummary().Proxies; got != 0 {
			return fmt.Errorf("%d proxies counted after the stream ended", got)
		}
		return nil
	})
}

// trustFromMetrics reads the trust summary from what reg would serve on
// /metrics.
func trustFromMetrics(t *testing.T, reg *prometheus.Registry) identity.TrustSummary {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&text, f); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := identity.ParseTrustMetrics(&text)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
