// Hand-written in the shape controller-gen produces; replace by running
// controller-gen object paths=./api/... once the tool is pinned.

package v1alpha1

import "k8s.io/apimachinery/pkg/runtime"

// DeepCopyInto copies the receiver into out.
func (in *Workload) DeepCopyInto(out *Workload) {
	*out = *in
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	in.Spec.DeepCopyInto(&out.Spec)
}

// DeepCopy returns a deep copy of the receiver.
func (in *Workload) DeepCopy() *Workload {
	if in == nil {
		return nil
	}
	out := new(Workload)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *Workload) DeepCopyObject() runtime.Object {
	if c := in.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies the receiver into out.
func (in *WorkloadSpec) DeepCopyInto(out *WorkloadSpec) {
	*out = *in
	if in.Replicas != nil {
		out.Replicas = new(int32)
		*out.Replicas = *in.Replicas
	}
	if in.Command != nil {
		out.Command = append([]string(nil), in.Command...)
	}
	if in.Env != nil {
		out.Env = append([]EnvVar(nil), in.Env...)
	}
	if in.Ports != nil {
		out.Ports = append([]WorkloadPort(nil), in.Ports...)
	}
	if in.ReadinessProbe != nil {
		out.ReadinessProbe = new(Probe)
		in.ReadinessProbe.DeepCopyInto(out.ReadinessProbe)
	}
	if in.Inject != nil {
		out.Inject = new(bool)
		*out.Inject = *in.Inject
	}
	if in.Addresses != nil {
		out.Addresses = append([]string(nil), in.Addresses...)
	}
}

// DeepCopy returns a deep copy of the receiver.
func (in *WorkloadSpec) DeepCopy() *WorkloadSpec {
	if in == nil {
		return nil
	}
	out := new(WorkloadSpec)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies the receiver into out.
func (in *Probe) DeepCopyInto(out *Probe) {
	*out = *in
	if in.HTTPGet != nil {
		out.HTTPGet = new(HTTPGetAction)
		*out.HTTPGet = *in.HTTPGet
	}
	if in.TCPSocket != nil {
		out.TCPSocket = new(TCPSocketAction)
		*out.TCPSocket = *in.TCPSocket
	}
}

// DeepCopy returns a deep copy of the receiver.
func (in *Probe) DeepCopy() *Probe {
	if in == nil {
		return nil
	}
	out := new(Probe)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyInto copies the receiver into out.
func (in *WorkloadList) DeepCopyInto(out *WorkloadList) {
	*out = *in
	out.TypeMeta = in.TypeMeta
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]Workload, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a deep copy of the receiver.
func (in *WorkloadList) DeepCopy() *WorkloadList {
	if in == nil {
		return nil
	}
	out := new(WorkloadList)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *WorkloadList) DeepCopyObject() runtime.Object {
	if c := in.DeepCopy(); c != nil {
		return c
	}
	return nil
}
