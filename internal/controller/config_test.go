package controller

import (
	"strings"
	"testing"
)

// The injector must be told where its proxies find the controller: there
// is no default namespace to fall back on.
func TestWebhookNeedsTheProxiesControllerAddress(t *testing.T) {
	cfg := Default()
	cfg.Kubernetes = true
	cfg.IdentitySecret = "other-ns/skein-identity-issuer"
	cfg.WebhookAddr, cfg.WebhookCertDir = "0.0.0.0:8443", "/var/run/skein/webhook"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "proxy-controller-addr: \"\" is not host:port (required with webhook-addr") {
		t.Fatalf("Validate without proxy-controller-addr: %v", err)
	}
	cfg.ProxyControllerAddr = "skein-controller.other-ns.svc.cluster.local:8086"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
