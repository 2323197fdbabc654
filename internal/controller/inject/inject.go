// Package inject adds the mesh to pods: the skein-init step that redirects
// the pod's TCP traffic and the skein-proxy sidecar, configured from the
// pod's skein.io/ annotations. Inject is a pure function on a Pod; the
// admission webhook (NewWebhook) and `skein inject` (Manifests) are its two
// callers. It does not talk to the API server itself.
package inject

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
)

// Config is what every injected pod shares.
type Config struct {
	// ProxyImage holds both skein-proxy and skein-init.
	ProxyImage string
	// ProxyVersion is written to the skein.io/proxy-version annotation; the
	// image's tag when empty.
	ProxyVersion string
	// ControllerAddr is the controller's gRPC address, host:port: the
	// Service in the namespace Skein was installed in (install.ControllerAddr).
	// No default: a proxy must not dial a controller in a namespace someone
	// else may own.
	ControllerAddr string
	// TrustDomain is the trust domain of the workloads' SPIFFE IDs. The
	// proxy expects the controller to be spiffe://<TrustDomain>/skein/controller.
	TrustDomain string
	// TrustAnchorsPEM are the mesh's trust anchors, handed to every proxy
	// in its environment.
	TrustAnchorsPEM string
	// NativeSidecars runs the proxy as an init container with
	// restartPolicy Always (Kubernetes 1.29+), so it starts before the
	// application and stops after it. Otherwise the proxy is the first
	// regular container.
	NativeSidecars bool
}

// AwaitCommand waits in the proxy's container until the proxy is ready.
var AwaitCommand = []string{"skein-proxy", "await", "-timeout", "2m"}

// SupportsNativeSidecars reports whether a Kubernetes server of this
// version runs native sidecars (init containers with restartPolicy
// Always): on by default from 1.29, GA in 1.33.
func SupportsNativeSidecars(major, minor string) bool {
	maj, err1 := strconv.Atoi(major)
	min, err2 := strconv.Atoi(strings.TrimRight(minor, "+")) // GKE and EKS say "29+"
	if err1 != nil || err2 != nil {
		return false // a regular container works everywhere
	}
	return maj > 1 || maj == 1 && min >= NativeSidecarsMinMinor
}

// NativeSidecarsMinMinor is the first Kubernetes 1.x with native sidecars
// on by default.
const NativeSidecarsMinMinor = 29

// DefaultConfig returns the settings of a default `skein install`.
func DefaultConfig() Config {
	return Config{
		ProxyImage:     "ghcr.io/skeinmesh/skein-proxy:dev",
		TrustDomain:    "cluster.local",
		NativeSidecars: true,
	}
}

// Validate reports every field that is wrong.
func (c *Config) Validate() error {
	var errs []error
	if c.ProxyImage == "" {
		errs = append(errs, errors.New("proxy-image: is required"))
	}
	if _, _, err := net.SplitHostPort(c.ControllerAddr); err != nil {
		errs = append(errs, fmt.Errorf("controller-addr: %q is not host:port (the controller's Service in the namespace Skein was installed in): %w", c.ControllerAddr, err))
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil || strings.Contains(c.TrustDomain, ":") {
		errs = append(errs, fmt.Errorf("trust-domain: %q is not a trust domain name", c.TrustDomain))
	}
	if !strings.Contains(c.TrustAnchorsPEM, "-----BEGIN CERTIFICATE-----") {
		errs = append(errs, errors.New("trust-anchors: the mesh's trust anchors (PEM) are required: injected proxies check every peer against them"))
	}
	return errors.Join(errs...)
}

// Version is what the skein.io/proxy-version annotation of the pods it
// injects says: ProxyVersion, else the image's tag.
func (c *Config) Version() string { return c.proxyVersion() }

func (c *Config) proxyVersion() string {
	if c.ProxyVersion != "" {
		return c.ProxyVersion
	}
	// The tag is after the last colon, unless that colon belongs to a
	// registry's port (then a slash follows it).
	if i := strings.LastIndex(c.ProxyImage, ":"); i >= 0 && !strings.Contains(c.ProxyImage[i:], "/") {
		return strings.SplitN(c.ProxyImage[i+1:], "@", 2)[0]
	}
	return "latest"
}

// Inject returns a copy of pod with the mesh added, if the pod or its
// namespace ns (which may be nil) asks for it with skein.io/inject:
// enabled; the pod's own annotation wins over the namespace's. Pods already
// injected and pods on the host network are left alone. injected reports
// whether anything was added; err is set when the pod asks for injection
// but its annotations cannot be honoured, and names the annotation.
//
// The pod's namespace is pod.Namespace, else ns.Name; when neither is known
// (offline templates) the proxy reads it from the Downward API at run time.
func Inject(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) (patched *corev1.Pod, injected bool, err error) {
	if !wantsInjection(pod, ns) || alreadyInjected(pod) || pod.Spec.HostNetwork {
		return pod, false, nil
	}
	settings, err := readAnnotations(pod.Annotations)
	if err != nil {
		return pod, false, fmt.Errorf("pod %s: %w", podName(pod), err)
	}
	namespace := pod.Namespace
	if namespace == "" && ns != nil {
		namespace = ns.Name
	}
	out := pod.DeepCopy()
	spec := &out.Spec
	init := initContainer(cfg, settings)
	settings.inboundPorts = appPorts(pod)
	settings.probeTCPPorts = portList(rewriteTCPProbes(spec, settings.skipInbound))
	proxy := proxyContainer(cfg, settings, proxyIdentity{
		trustDomain:    cfg.TrustDomain,
		namespace:      namespace,
		serviceAccount: serviceAccountName(pod),
		workload:       workloadName(pod),
	})
	if cfg.NativeSidecars {
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		spec.InitContainers = append([]corev1.Container{init, proxy}, spec.InitContainers...)
	} else {
		// The kubelet starts containers in order, each after the one
		// before has run its postStart hook: the application starts once
		// its proxy is ready, as with a native sidecar.
		proxy.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
			Exec: &corev1.ExecAction{Command: AwaitCommand},
		}}
		spec.InitContainers = append([]corev1.Container{init}, spec.InitContainers...)
		spec.Containers = append([]corev1.Container{proxy}, spec.Containers...)
	}
	spec.Volumes = append(spec.Volumes, injectedVolumes()...)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationInjected] = "true"
	out.Annotations[AnnotationProxyVersion] = cfg.proxyVersion()
	return out, true, nil
}

// maxInboundPorts is skein-proxy's bound on -inbound-ports
// (proxy.MaxInboundPorts, not imported: the controller does not link the
// proxy).
const maxInboundPorts = 64

// appPorts are the TCP ports the pod's containers declare, sorted, for
// the proxy's -inbound-ports: their inbound policies are watched from the
// proxy's start. Past the proxy's bound the rest are left out (the proxy
// watches them from their first request, as it does undeclared ports).
func appPorts(pod *corev1.Pod) string {
	var ports []uint16
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) && p.ContainerPort > 0 && p.ContainerPort <= 65535 {
				ports = append(ports, uint16(p.ContainerPort))
			}
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	return portList(ports[:min(len(ports), maxInboundPorts)])
}

// portList is ports as the proxy's flags take them: "8080,9090".
func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func wantsInjection(pod *corev1.Pod, ns *corev1.Namespace) bool {
	if v, ok := pod.Annotations[AnnotationInject]; ok {
		return v == InjectEnabled
	}
	return ns != nil && ns.Annotations[AnnotationInject] == InjectEnabled
}

func alreadyInjected(pod *corev1.Pod) bool {
	if pod.Annotations[AnnotationInjected] == "true" {
		return true
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == ProxyContainerName {
				return true
			}
		}
	}
	return false
}

func serviceAccountName(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

// workloadName is the name of what made the pod: a Deployment's name for
// its ReplicaSet's pods (the pod-template-hash suffix removed), the owner's
// name otherwise, else the pod's own name.
func workloadName(pod *corev1.Pod) string {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller != nil && !*ref.Controller {
			continue
		}
		if hash := pod.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && hash != "" {
			if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok {
				return name
			}
		}
		return ref.Name
	}
	if pod.Name != "" {
		return pod.Name
	}
	return strings.TrimSuffix(pod.GenerateName, "-")
}

func podName(pod *corev1.Pod) string {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName
	}
	if pod.Namespace != "" {
		return pod.Namespace + "/" + name
	}
	return name
}
