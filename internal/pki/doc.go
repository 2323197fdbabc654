// Package pki holds the certificate plumbing that both ends of Skein's
// identity system share: P-256 keys, the trust anchor and issuer templates,
// PEM encoding and parsing. It knows nothing of tokens, gRPC or Kubernetes,
// so the proxy can import it and stay lean.
package pki
