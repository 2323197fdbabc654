package main

import (
	"testing"

	"github.com/skeinmesh/skein/internal/install"
)

// Only the flags given change a setting of the recorded configuration.
func TestUpgradeOverlaysOnlyTheFlagsGiven(t *testing.T) {
	recorded := install.Default()
	recorded.Namespace, recorded.Replicas, recorded.LogLevel, recorded.PrometheusURL = "mesh", 3, "warn", "http://prometheus:9090"
	given := install.Default() // every flag at its default
	given.LogLevel = "debug"
	given.Identity.TrustAnchorPEM = []byte("anchor")
	cfg := overlay(recorded, given, func(flag string) bool { return flag == "controller-log-level" })
	if cfg.LogLevel != "debug" {
		t.Errorf("log level %q, want the flag's debug", cfg.LogLevel)
	}
	if cfg.Namespace != "mesh" || cfg.Replicas != 3 || cfg.PrometheusURL != "http://prometheus:9090" {
		t.Errorf("namespace %q, replicas %d, prometheus %q: want the recorded mesh, 3, http://prometheus:9090", cfg.Namespace, cfg.Replicas, cfg.PrometheusURL)
	}
	if string(cfg.Identity.TrustAnchorPEM) != "anchor" {
		t.Error("the trust material given was dropped")
	}
	if cfg = overlay(recorded, given, func(flag string) bool { return flag == "replicas" }); cfg.Replicas != 1 || cfg.LogLevel != "warn" {
		t.Errorf("--replicas 1: replicas %d, log level %q; want 1 and the recorded warn", cfg.Replicas, cfg.LogLevel)
	}
}
