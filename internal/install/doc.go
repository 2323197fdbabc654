// Package install renders every Kubernetes object Skein needs in a cluster
// (namespace, CRDs, RBAC, identity and webhook Secrets, the controller's
// Deployment and Service, the proxy injector's webhook configuration) as
// multi-document YAML for `kubectl apply -f -`. It talks to no cluster:
// checking an installation is the job of the check subpackage.
package install
