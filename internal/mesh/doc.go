// Package mesh runs a whole mesh on one Linux machine (`skein up`): the
// controller, Prometheus, and for every Workload replica a test host (a
// network namespace with its own address) running the workload's command
// behind skein-init's rules and a skein-proxy with its own identity. Every
// Service gets a virtual IP, balanced per connection in the hub as
// kube-proxy would, and a DNS name that resolves in every host. Edits to the
// manifests are applied while it runs. Everything it creates lives in
// namespaces it made and under its state directory, and goes away on Down.
package mesh
