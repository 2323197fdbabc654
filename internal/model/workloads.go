package model

import "sort"

// WorkloadSummary counts one workload's instances.
type WorkloadSummary struct {
	Namespace, Name string
	ServiceAccount  string
	// Instances is how many instances the model knows; Meshed how many of
	// them run a proxy, Ready how many are ready (pass their readiness
	// probe, so are endpoints of the services that select them).
	Instances, Meshed, Ready int
	// Replicas are its instances one by one, sorted by name.
	Replicas []ReplicaState
}

// ReplicaState is one instance of a workload: its name (the pod's) and
// whether it runs a proxy and is ready.
type ReplicaState struct {
	Name          string
	Meshed, Ready bool
}

// Workloads summarizes the workloads of namespace ("" = every namespace),
// sorted by namespace and name.
func (m *Model) Workloads(namespace string) []WorkloadSummary {
	m.mu.Lock()
	defer m.mu.Unlock()
	byKey := map[objKey]*WorkloadSummary{}
	for ns, instances := range m.instancesByNS {
		if namespace != "" && ns != namespace {
			continue
		}
		for _, in := range instances {
			k := objKey{in.Namespace, in.Workload}
			w, ok := byKey[k]
			if !ok {
				w = &WorkloadSummary{Namespace: in.Namespace, Name: in.Workload, ServiceAccount: in.ServiceAccount}
				byKey[k] = w
			}
			w.Instances++
			if in.Meshed {
				w.Meshed++
			}
			if in.Ready {
				w.Ready++
			}
			w.Replicas = append(w.Replicas, ReplicaState{Name: in.Name, Meshed: in.Meshed, Ready: in.Ready})
		}
	}
	out := make([]WorkloadSummary, 0, len(byKey))
	for _, w := range byKey {
		sort.Slice(w.Replicas, func(i, j int) bool { return w.Replicas[i].Name < w.Replicas[j].Name })
		out = append(out, *w)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}
