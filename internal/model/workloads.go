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
		}
	}
	out := make([]WorkloadSummary, 0, len(byKey))
	for _, w := range byKey {
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
