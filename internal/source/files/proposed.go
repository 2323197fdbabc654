package files

import (
	"errors"
	"fmt"

	"github.com/skeinmesh/skein/internal/model"
)

// DecodeProposed reads proposed authorization policy from one manifest
// stream (`skein authz simulate -f`): Servers, AuthorizationPolicies,
// MeshTLSAuthentications, NetworkAuthentications and the HTTPRoutes and
// GRPCRoutes whose parent is a Server, decoded strictly and each checked on
// its own; the objects they refer to may be live ones, so the inbound
// compiler checks the rest after merging. name names the stream in errors.
func DecodeProposed(name string, data []byte) (model.InboundInputs, error) {
	objects, errs := decodeFile(name, data)
	var in model.InboundInputs
	for _, o := range objects {
		var err error
		switch {
		case o.server != nil:
			err = o.server.Validate()
			in.Servers = append(in.Servers, o.server)
		case o.authzPol != nil:
			err = o.authzPol.Validate()
			in.AuthorizationPolicies = append(in.AuthorizationPolicies, o.authzPol)
		case o.meshTLS != nil:
			err = o.meshTLS.Validate()
			in.MeshTLSAuthentications = append(in.MeshTLSAuthentications, o.meshTLS)
		case o.network != nil:
			err = o.network.Validate()
			in.NetworkAuthentications = append(in.NetworkAuthentications, o.network)
		case o.httpRoute != nil:
			in.HTTPRoutes = append(in.HTTPRoutes, o.httpRoute)
		case o.grpcRoute != nil:
			in.GRPCRoutes = append(in.GRPCRoutes, o.grpcRoute)
		default:
			errs = append(errs, o.fail("kind", fmt.Errorf("%s %s is not authorization policy: simulate takes Servers, AuthorizationPolicies, MeshTLSAuthentications, NetworkAuthentications and Server-parented routes", o.apiVersion, o.kind)))
		}
		if err != nil {
			errs = append(errs, o.failFields(err)...)
		}
	}
	if len(errs) > 0 {
		return model.InboundInputs{}, errors.Join(errs...)
	}
	return in, nil
}
