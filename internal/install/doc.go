// Package install renders every Kubernetes object Skein needs in a cluster
// (namespace, CRDs, RBAC, identity and webhook Secrets, the controller's
// Deployment and Service, the proxy injector's webhook configuration) as
// multi-document YAML for `kubectl apply -f -`, from Skein's Helm chart
// (charts/skein, embedded) through Helm's library: the chart is the only
// copy of every manifest, and this package turns a Config (the flags of
// `skein install`) into the chart's values, making the trust material the
// Config does not give. It talks to no cluster: checking an installation
// is the job of the check subpackage.
package install
