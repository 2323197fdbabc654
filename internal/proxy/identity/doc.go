// Package identity is the proxy's side of the mesh identity: it makes the
// workload's private key in memory (it is never written anywhere), gets it
// certified by the controller's identity service with a token proving the
// workload's SPIFFE ID, renews the certificate at half of its life, and
// provides the mutual-TLS configs that present the current certificate and
// verify peers against the trust anchors.
//
// It must stay lean: no Kubernetes imports.
package identity
