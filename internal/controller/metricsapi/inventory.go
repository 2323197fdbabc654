package metricsapi

// Inventory is what the controller's model knows about workloads, which
// Prometheus cannot: how many replicas each should have and how many of
// them run a proxy, including idle ones that have no series yet.
type Inventory interface {
	// Workloads lists the workloads of namespace ("" = every namespace).
	Workloads(namespace string) []WorkloadInfo
}

// WorkloadInfo describes one workload.
type WorkloadInfo struct {
	Namespace string
	Name      string
	// Replicas is how many instances the workload has; Meshed how many of
	// them run a proxy; Ready how many pass their readiness probe.
	Replicas int
	Meshed   int
	Ready    int
	// Instances are the replicas one by one (pod rows); nil when not known.
	Instances []InstanceInfo
	// ServiceAccount is the identity's account: the workload's proxies are
	// spiffe://TRUST-DOMAIN/ns/Namespace/sa/ServiceAccount.
	ServiceAccount string
}

// InstanceInfo is one replica of a workload: its name (the pod's, or
// WORKLOAD-i for a Workload) and whether it runs a proxy and is ready.
type InstanceInfo struct {
	Name          string
	Meshed, Ready bool
}

// StaticInventory is an Inventory over a fixed list, for tests and for
// callers that rebuild it on every change.
type StaticInventory []WorkloadInfo

// Workloads implements Inventory.
func (s StaticInventory) Workloads(namespace string) []WorkloadInfo {
	var out []WorkloadInfo
	for _, w := range s {
		if namespace == "" || w.Namespace == namespace {
			out = append(out, w)
		}
	}
	return out
}
