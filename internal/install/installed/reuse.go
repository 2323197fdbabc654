package installed

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/skeinmesh/skein/internal/install"
)

// Reuse fills cfg's trust material with the installation's, so that the
// rendered objects keep every running proxy's trust: the issuer and its
// anchors, the join-token key, and the webhook certificate when still
// valid. Material already in cfg (from --identity-dir, --trust-anchor or
// values) must be the installation's own; anything else is refused with
// the reason, as is another trust domain or an installation whose issuer
// a generate-mode render could not keep. It returns what it reused, for
// the user.
func Reuse(cfg *install.Config, m *Mesh) (string, error) {
	mode := cfg.IdentityMode
	if mode == "" {
		mode = install.IdentityGenerate
	}
	var errs []error
	conflict := func(what string, given, found []byte) {
		if len(given) > 0 && len(found) > 0 && !bytes.Equal(given, found) {
			errs = append(errs, fmt.Errorf("%s given differs from the installed one in namespace %s", what, m.Namespace))
		}
	}
	if len(cfg.Identity.TrustAnchorPEM) > 0 && len(m.Identity.TrustAnchorPEM) > 0 && !bytes.Equal(cfg.Identity.TrustAnchorPEM, m.Identity.TrustAnchorPEM) {
		errs = append(errs, fmt.Errorf("the trust anchor given (%s) is not the one the mesh in namespace %s trusts (%s): every running proxy was injected with the installed one and would refuse certificates under the new; rotate the anchor instead (docs/install.md), or uninstall first",
			Fingerprints(cfg.Identity.TrustAnchorPEM), m.Namespace, Fingerprints(m.Identity.TrustAnchorPEM)))
	}
	if mode == install.IdentityGenerate {
		conflict("the issuer certificate", cfg.Identity.IssuerCertPEM, m.Identity.IssuerCertPEM)
		conflict("the issuer key", cfg.Identity.IssuerKeyPEM, m.Identity.IssuerKeyPEM)
		if !m.IssuerFound && len(m.Identity.TrustAnchorPEM) > 0 && len(cfg.Identity.IssuerCertPEM) == 0 {
			errs = append(errs, fmt.Errorf("the mesh in namespace %s trusts %s but has no issuer Secret %s to keep (its issuer is external): give the issuer under that anchor with --identity-dir, or install with --identity external",
				m.Namespace, Fingerprints(m.Identity.TrustAnchorPEM), install.IssuerSecretName))
		}
	}
	conflict("the join-token key", cfg.Identity.JoinTokenKeyPEM, m.Identity.JoinTokenKeyPEM)
	if r := m.Recorded; r != nil && cfg.TrustDomain != "" && r.TrustDomain != cfg.TrustDomain {
		errs = append(errs, fmt.Errorf("trust domain %q: the mesh in namespace %s is %q, and its workloads' identities with it; uninstall first to change it", cfg.TrustDomain, m.Namespace, r.TrustDomain))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}

	id := &cfg.Identity
	if len(id.TrustAnchorPEM) == 0 {
		id.TrustAnchorPEM = m.Identity.TrustAnchorPEM
	}
	if mode == install.IdentityGenerate && len(id.IssuerCertPEM) == 0 && m.IssuerFound {
		id.IssuerCertPEM, id.IssuerKeyPEM = m.Identity.IssuerCertPEM, m.Identity.IssuerKeyPEM
	}
	if len(id.JoinTokenKeyPEM) == 0 {
		id.JoinTokenKeyPEM = m.Identity.JoinTokenKeyPEM
	}
	if len(cfg.Webhook.CertPEM) == 0 {
		cfg.Webhook = m.Webhook
	}
	if len(id.TrustAnchorPEM) == 0 {
		return "no trust found in namespace " + m.Namespace + ": generated new", nil
	}
	return fmt.Sprintf("kept the trust of the mesh in namespace %s (anchor %s)", m.Namespace, Fingerprints(id.TrustAnchorPEM)), nil
}
