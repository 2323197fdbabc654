package inject

import (
	corev1 "k8s.io/api/core/v1"
)

// WantsInjection reports whether the injector adds the mesh to pod, in
// namespace ns (which may be nil): the pod or its namespace asks for it,
// and the pod is not on the host network.
func WantsInjection(pod *corev1.Pod, ns *corev1.Namespace) bool {
	return wantsInjection(pod, ns) && !pod.Spec.HostNetwork
}

// Proxy returns pod's proxy container, as a native sidecar or a regular
// container, and its status when the kubelet has reported one; nil when
// the pod has no proxy.
func Proxy(pod *corev1.Pod) (*corev1.Container, *corev1.ContainerStatus) {
	find := func(containers []corev1.Container, statuses []corev1.ContainerStatus) (*corev1.Container, *corev1.ContainerStatus) {
		for i := range containers {
			if containers[i].Name != ProxyContainerName {
				continue
			}
			for j := range statuses {
				if statuses[j].Name == ProxyContainerName {
					return &containers[i], &statuses[j]
				}
			}
			return &containers[i], nil
		}
		return nil, nil
	}
	if c, s := find(pod.Spec.InitContainers, pod.Status.InitContainerStatuses); c != nil {
		return c, s
	}
	return find(pod.Spec.Containers, pod.Status.ContainerStatuses)
}

// TrustAnchorsPEM returns the trust anchors the injector handed proxy (a
// container Proxy returned), "" when it has none in its spec.
func TrustAnchorsPEM(proxy *corev1.Container) string { return envValue(proxy, trustAnchorsEnv) }

// ControllerOf returns the controller address and identity the injector
// handed proxy, "" for what it was not given (a proxy injected before the
// controller's identity was passed expects ns/skein/sa/skein-controller).
func ControllerOf(proxy *corev1.Container) (addr, id string) {
	return envValue(proxy, controllerAddrEnv), envValue(proxy, controllerIDEnv)
}

func envValue(c *corev1.Container, name string) string {
	for _, env := range c.Env {
		if env.Name == name {
			return env.Value
		}
	}
	return ""
}
