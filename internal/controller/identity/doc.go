// Package identity is the controller's identity service: an issuing CA under
// the mesh's trust anchor that certifies a workload's key for the SPIFFE ID
// (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>) a token
// proves it holds. Tokens are Kubernetes projected service-account tokens
// (checked with a TokenReview) or join tokens the controller signed.
//
// The issuer comes from a directory or a Kubernetes Secret in cert-manager's
// layout (tls.crt, tls.key, ca.crt) and is swapped without a restart when it
// changes. The package does not run the gRPC server; it provides the
// Identity service and the TLS config to serve it with.
package identity
