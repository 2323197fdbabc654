// Package meshid names the SPIFFE IDs of the mesh's own components. They
// live under /skein/ in the trust domain, outside the workload form
// /ns/<namespace>/sa/<service-account>, so that no namespace or service
// account a user creates can ever name one, and the identity service
// refuses them to every workload (docs/identity.md).
package meshid

import (
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// controlPlanePath is the first path segment every control-plane identity
// starts with.
const controlPlanePath = "/skein"

// ControllerPath is the path of the controller's identity.
const ControllerPath = controlPlanePath + "/controller"

// Controller is the identity skein-controller presents to the proxies:
// spiffe://<td>/skein/controller, whatever namespace it runs in.
func Controller(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromPath(td, ControllerPath)
}

// IsControlPlane reports whether id is reserved for the control plane: its
// path is /skein or under /skein/.
func IsControlPlane(id spiffeid.ID) bool {
	p := id.Path()
	return p == controlPlanePath || strings.HasPrefix(p, controlPlanePath+"/")
}
