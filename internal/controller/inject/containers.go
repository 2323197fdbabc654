package inject

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skeinmesh/skein/internal/meshid"
)

// Names and numbers an injected pod is built from; skein-proxy and
// skein-init use the same defaults.
const (
	ProxyContainerName = "skein-proxy"
	InitContainerName  = "skein-init"

	ProxyUID      = 2102
	InboundPort   = 4143
	AdminPort     = 4191
	TokenAudience = "identity.skein.io"
	// TokenExpirySeconds is the projected token's lifetime; the kubelet
	// renews it at 80%, and the proxy re-reads the file at each renewal.
	TokenExpirySeconds = 3600
	tokenVolume        = "skein-identity-token"
	tokenDir           = "/var/run/secrets/skein.io/identity"
	tokenFile          = "token"
	initRunVolume      = "skein-init-run"
	// stateVolume holds what the proxy keeps across its own restarts (the
	// trust anchors the controller sent): in memory, as long as the pod,
	// mounted by the proxy alone.
	stateVolume         = "skein-proxy-state"
	stateDir            = "/var/run/skein/proxy-state"
	trustAnchorsKeepEnv = "SKEIN_PROXY_TRUST_ANCHORS_KEEP"
	podNameEnv          = "POD_NAME"
	podNamespaceEnv     = "POD_NAMESPACE"
	podNamespaceValue   = "$(" + podNamespaceEnv + ")"
	trustAnchorsEnv     = "SKEIN_PROXY_TRUST_ANCHORS_PEM"
	controllerAddrEnv   = "SKEIN_PROXY_CONTROLLER_ADDR"
	controllerIDEnv     = "SKEIN_PROXY_CONTROLLER_ID"
)

func initContainer(cfg Config, s settings) corev1.Container {
	args := []string{"--proxy-uid", strconv.Itoa(ProxyUID)}
	if s.skipInboundPorts != "" {
		args = append(args, "--skip-inbound-ports", s.skipInboundPorts)
	}
	if s.skipOutboundPorts != "" {
		args = append(args, "--skip-outbound-ports", s.skipOutboundPorts)
	}
	return corev1.Container{
		Name:         InitContainerName,
		Image:        cfg.ProxyImage,
		Command:      []string{"skein-init"},
		Args:         args,
		VolumeMounts: []corev1.VolumeMount{{Name: initRunVolume, MountPath: "/run"}},
		SecurityContext: &corev1.SecurityContext{
			// Programming netfilter needs these two in the pod's network
			// namespace, and root; nothing else.
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			RunAsUser:    ptr(int64(0)),
			RunAsNonRoot: ptr(false),
			// The root filesystem stays read-only; iptables-restore's lock
			// file goes to a scratch /run.
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
		},
	}
}

// proxyIdentity is what the proxy says about itself: its SPIFFE ID and
// the labels of its metrics.
type proxyIdentity struct {
	trustDomain, namespace, serviceAccount, workload string
}

func (p proxyIdentity) spiffeID() string {
	return "spiffe://" + p.trustDomain + "/ns/" + p.namespaceOrEnv() + "/sa/" + p.serviceAccount
}

// namespaceOrEnv is the namespace when known, else a reference to the
// Downward API variable that the kubelet expands.
func (p proxyIdentity) namespaceOrEnv() string {
	if p.namespace != "" {
		return p.namespace
	}
	return podNamespaceValue
}

func proxyContainer(cfg Config, s settings, id proxyIdentity) corev1.Container {
	// POD_NAME and POD_NAMESPACE come first: $(VAR) references only see
	// variables defined before them.
	env := []corev1.EnvVar{
		{Name: podNameEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: podNamespaceEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: controllerAddrEnv, Value: cfg.ControllerAddr},
		{Name: controllerIDEnv, Value: "spiffe://" + cfg.TrustDomain + meshid.ControllerPath},
		{Name: "SKEIN_PROXY_IDENTITY", Value: id.spiffeID()},
		{Name: "SKEIN_PROXY_TOKEN_FILE", Value: tokenDir + "/" + tokenFile},
		// The anchors travel in the pod spec, as Linkerd's do: no ConfigMap
		// to keep in every namespace. The proxy follows the controller's
		// changes (an anchor rotation) and keeps them in its state volume,
		// which it starts from when its container restarts.
		{Name: trustAnchorsEnv, Value: cfg.TrustAnchorsPEM},
		{Name: trustAnchorsKeepEnv, Value: stateDir + "/ca.crt"},
		{Name: "SKEIN_PROXY_LABELS", Value: "namespace=" + id.namespaceOrEnv() + ",workload=" + id.workload + ",pod=$(" + podNameEnv + ")"},
	}
	if s.inboundPorts != "" {
		env = append(env, corev1.EnvVar{Name: "SKEIN_PROXY_INBOUND_PORTS", Value: s.inboundPorts})
	}
	if s.probeTCPPorts != "" {
		env = append(env, corev1.EnvVar{Name: "SKEIN_PROXY_PROBE_TCP_PORTS", Value: s.probeTCPPorts})
	}
	if s.opaquePorts != "" {
		env = append(env, corev1.EnvVar{Name: "SKEIN_PROXY_OPAQUE_PORTS", Value: s.opaquePorts})
	}
	if s.logLevel != "" {
		env = append(env, corev1.EnvVar{Name: "SKEIN_PROXY_LOG_LEVEL", Value: s.logLevel})
	}
	return corev1.Container{
		Name:  ProxyContainerName,
		Image: cfg.ProxyImage,
		Env:   env,
		Ports: []corev1.ContainerPort{
			{Name: "skein-inbound", ContainerPort: InboundPort, Protocol: corev1.ProtocolTCP},
			{Name: "skein-admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: s.resources,
		// A native sidecar has started, and the application's containers
		// may start, once its startupProbe passes (readiness does not gate
		// them): /ready, which passes once the proxy holds its certificate.
		StartupProbe:   startupProbe(),
		ReadinessProbe: adminProbe("/ready"),
		LivenessProbe:  adminProbe("/live"),
		VolumeMounts: []corev1.VolumeMount{
			{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true},
			{Name: stateVolume, MountPath: stateDir},
		},
		SecurityContext: &corev1.SecurityContext{
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			RunAsUser:                ptr(int64(ProxyUID)),
			RunAsNonRoot:             ptr(true),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
		},
	}
}

func adminProbe(path string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AdminPort)},
		},
	}
}

// Proxy startup: probed every second for up to two minutes (as long as
// `skein-proxy await` waits where the proxy is a regular container); a
// proxy with no certificate by then is restarted by the kubelet.
const (
	StartupProbePeriodSeconds    = 1
	StartupProbeFailureThreshold = 120
)

func startupProbe() *corev1.Probe {
	p := adminProbe("/ready")
	p.PeriodSeconds = StartupProbePeriodSeconds
	p.FailureThreshold = StartupProbeFailureThreshold
	return p
}

func injectedVolumes() []corev1.Volume {
	return []corev1.Volume{
		{Name: initRunVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: stateVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi")),
		}}},
		{
			Name: tokenVolume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience:          TokenAudience,
					ExpirationSeconds: ptr(int64(TokenExpirySeconds)),
					Path:              tokenFile,
				}}},
			}},
		},
	}
}

func ptr[T any](v T) *T { return &v }
