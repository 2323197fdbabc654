package install_test

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/install"
)

func mustTD(t *testing.T, name string) spiffeid.TrustDomain {
	t.Helper()
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		t.Fatal(err)
	}
	return td
}

// webhookTLS is a webhook certificate to give to several renders.
func webhookTLS(t *testing.T) install.WebhookTLS {
	t.Helper()
	tls, err := install.NewWebhookTLS("skein", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tls
}
