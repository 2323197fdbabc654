package check

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/install"
)

// AdminProber asks the controller's admin server whether it is ready.
type AdminProber interface {
	Ready(ctx context.Context) error
}

// Checker runs the checks against one cluster.
type Checker struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface // reads CustomResourceDefinitions; nil skips the CRD check
	// Namespace Skein is (to be) installed in.
	Namespace string
	// CRDs are the names of the CRDs that must be established after the
	// install (install.CRDNames); none skips the check.
	CRDs []string
	// GatewayAPIVersion is the Gateway API bundle `skein install
	// --gateway-api-crds` renders, named in hints; "" names none.
	GatewayAPIVersion string
	// Admin probes the controller's /ready; nil means through the API
	// server's service proxy (ServiceProxyProber).
	Admin AdminProber
	Now   func() time.Time // nil means time.Now
}

func (c *Checker) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Checker) admin() AdminProber {
	if c.Admin != nil {
		return c.Admin
	}
	return ServiceProxyProber{Client: c.Client, Namespace: c.Namespace}
}

// ServiceProxyProber reaches the controller's /ready through the API
// server's service proxy
// (/api/v1/namespaces/NS/services/skein-controller:9996/proxy/ready), so
// that `skein check` works from outside the cluster.
type ServiceProxyProber struct {
	Client    kubernetes.Interface
	Namespace string
}

func (p ServiceProxyProber) Ready(ctx context.Context) error {
	body, err := p.Client.CoreV1().Services(p.Namespace).
		ProxyGet("http", install.ControllerName, install.AdminProxyPort, "/ready", nil).
		DoRaw(ctx)
	if err != nil {
		// The API server's own answers are a Status (no endpoints, ...);
		// the controller's are plain text.
		var st metav1.Status
		if json.Unmarshal(body, &st) == nil && st.Message != "" {
			return fmt.Errorf("%w: %s", err, st.Message)
		}
		if text := strings.TrimSpace(string(body)); text != "" {
			return fmt.Errorf("%w: %s", err, truncate(text, 200))
		}
		return err
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// timeout bounds each API call so that an unreachable server fails the
// check instead of hanging it.
const timeout = 10 * time.Second
