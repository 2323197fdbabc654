package install

import (
	"fmt"
	"path"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skeinmesh/skein/internal/controller/identity"
)

// Where the controller's container finds its mounted files: the webhook's
// serving pair and the join-token key's public half. The issuer is not
// mounted (the controller reads and watches it through the API), nor is
// any signing key.
const (
	webhookCertDir  = "/var/run/skein/webhook"
	joinTokenKeyDir = "/var/run/skein/join-token"
	nonRootUID      = 65532
)

// ControllerSelector selects the controller's pods.
var ControllerSelector = map[string]string{"app.kubernetes.io/name": ControllerName}

// controllerArgs are skein-controller's flags (docs/controller.md).
func controllerArgs(cfg Config) []string {
	args := []string{
		"-kubernetes",
		"-identity-secret", cfg.Namespace + "/" + IssuerSecretName,
		"-join-token-key", path.Join(joinTokenKeyDir, identity.JoinTokenPublicKeyFile),
		"-trust-domain", cfg.TrustDomain,
		"-grpc-addr", fmt.Sprintf("0.0.0.0:%d", GRPCPort),
		"-admin-addr", fmt.Sprintf("0.0.0.0:%d", AdminPort),
		"-webhook-addr", fmt.Sprintf("0.0.0.0:%d", WebhookPort),
		"-webhook-cert-dir", webhookCertDir,
		"-proxy-controller-addr", ControllerAddr(cfg.Namespace),
		"-log-level", cfg.LogLevel,
		"-default-inbound-policy", cfg.DefaultInboundPolicy,
	}
	if cfg.PrometheusURL != "" {
		args = append(args, "-api-addr", fmt.Sprintf("127.0.0.1:%d", APIPort), "-prometheus-url", cfg.PrometheusURL)
	}
	return args
}

func controllerDeployment(cfg Config) *appsv1.Deployment {
	meta := objectMeta(cfg, ControllerName)
	podLabels := map[string]string{}
	for k, v := range meta.Labels {
		podLabels[k] = v
	}
	replicas := cfg.Replicas
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: ControllerSelector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec:       controllerPodSpec(cfg),
			},
		},
	}
}

func controllerPodSpec(cfg Config) corev1.PodSpec {
	readOnlyMode := int32(0o440) // group-readable: fsGroup makes the files the controller's
	uid := int64(nonRootUID)
	spec := corev1.PodSpec{
		ServiceAccountName: ControllerName,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr(true),
			RunAsUser:      &uid,
			RunAsGroup:     &uid,
			FSGroup:        &uid,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{controllerContainer(cfg)},
		Volumes: []corev1.Volume{
			{Name: "webhook-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: WebhookSecretName, DefaultMode: &readOnlyMode}}},
			{Name: "join-token-public-key", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: JoinTokenPublicKeyConfigMapName}, DefaultMode: &readOnlyMode,
			}}},
		},
	}
	if cfg.Replicas > 1 {
		// Replicas on different nodes, so one node's loss leaves the webhook
		// and the identity service up.
		spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					LabelSelector: &metav1.LabelSelector{MatchLabels: ControllerSelector},
					TopologyKey:   "kubernetes.io/hostname",
				},
			}},
		}}
	}
	return spec
}

func controllerContainer(cfg Config) corev1.Container {
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("admin")}},
			PeriodSeconds:    10,
			FailureThreshold: 3,
		}
	}
	return corev1.Container{
		Name:            "controller",
		Image:           cfg.ControllerImage,
		ImagePullPolicy: corev1.PullPolicy(cfg.ImagePullPolicy),
		Args:            controllerArgs(cfg),
		// The injector reads the proxy image from the environment
		// (envflag: SKEIN_CONTROLLER_<FLAG>), so a controller without that
		// flag yet still starts.
		Env: []corev1.EnvVar{{Name: ProxyImageEnv, Value: cfg.ProxyImage}},
		Ports: []corev1.ContainerPort{
			{Name: "grpc", ContainerPort: GRPCPort, Protocol: corev1.ProtocolTCP},
			{Name: "webhook", ContainerPort: WebhookPort, Protocol: corev1.ProtocolTCP},
			{Name: "admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: probe("/ready"),
		LivenessProbe:  probe("/live"),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "webhook-tls", MountPath: webhookCertDir, ReadOnly: true},
			{Name: "join-token-public-key", MountPath: joinTokenKeyDir, ReadOnly: true},
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			RunAsNonRoot:             ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

func controllerService(cfg Config) *corev1.Service {
	port := func(name string, port int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromString(name), Protocol: corev1.ProtocolTCP}
	}
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: objectMeta(cfg, ControllerName),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: ControllerSelector,
			Ports: []corev1.ServicePort{
				port("grpc", GRPCPort),
				port("webhook", WebhookServicePort),
				port("admin", AdminPort),
			},
		},
	}
}

// AdminProxyPort is how the API server's service proxy names the admin port
// (…/services/skein-controller:9996/proxy/ready).
var AdminProxyPort = strconv.Itoa(AdminPort)

func controllerObjects(cfg Config) []runtime.Object {
	objs := []runtime.Object{controllerService(cfg), controllerDeployment(cfg)}
	if cfg.Replicas > 1 {
		objs = append(objs, controllerDisruptionBudget(cfg))
	}
	return objs
}

// controllerDisruptionBudget keeps all but one controller up while nodes
// are drained, so that identity, discovery and injection stay available.
// With one replica there is nothing to keep, and no budget: a budget that
// allowed no eviction would block every drain.
func controllerDisruptionBudget(cfg Config) *policyv1.PodDisruptionBudget {
	maxUnavailable := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: objectMeta(cfg, ControllerName),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &maxUnavailable,
			Selector:       &metav1.LabelSelector{MatchLabels: ControllerSelector},
		},
	}
}

func ptr[T any](v T) *T { return &v }
