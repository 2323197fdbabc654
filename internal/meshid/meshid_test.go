package meshid_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/meshid"
)

func TestControllerIsOutsideTheWorkloadForm(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	if got, want := meshid.Controller(td).String(), "spiffe://example.org/skein/controller"; got != want {
		t.Fatalf("Controller = %s, want %s", got, want)
	}
	for id, want := range map[string]bool{
		"spiffe://example.org/skein/controller":             true,
		"spiffe://example.org/skein":                        true,
		"spiffe://example.org/skein/anything/else":          true,
		"spiffe://example.org/ns/skein/sa/skein-controller": false, // a workload like any other
		"spiffe://example.org/skeinx/controller":            false,
		"spiffe://example.org/ns/default/sa/skein":          false,
	} {
		if got := meshid.IsControlPlane(spiffeid.RequireFromString(id)); got != want {
			t.Errorf("IsControlPlane(%s) = %t, want %t", id, got, want)
		}
	}
}
