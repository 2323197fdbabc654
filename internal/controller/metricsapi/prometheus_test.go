package metricsapi

import (
	"net"
	"testing"

	"github.com/skeinmesh/skein/internal/testenv"
)

// prometheusBinary skips the test when Prometheus is not installed (see
// testenv.PrometheusBinary).
func prometheusBinary(t *testing.T) string { return testenv.PrometheusBinary(t) }

// startPrometheus runs a real Prometheus scraping targets every second
// (testenv.StartPrometheus).
func startPrometheus(t *testing.T, targets []string) string {
	return testenv.StartPrometheus(t, targets)
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
