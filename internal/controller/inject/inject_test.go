package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.ProxyImage = "registry.test:5000/skein/proxy:v1.2.3"
	cfg.TrustDomain = "mesh.test"
	cfg.TrustAnchorsPEM = testAnchorsPEM
	cfg.ControllerAddr = "skein-controller.mesh-system.svc.cluster.local:8086"
	return cfg
}

// testAnchorsPEM stands for the mesh's trust anchors; the injector passes
// them on without parsing them.
const testAnchorsPEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

func testPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f8c-x2x4z", Namespace: "demo", Annotations: annotations,
			Labels:          map[string]string{"pod-template-hash": "7d9f8c"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-7d9f8c", Controller: ptr(true)}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web-sa",
			Containers:         []corev1.Container{{Name: "web", Image: "web:1"}},
		},
	}
}

func namespace(inject string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	if inject != "" {
		ns.Annotations = map[string]string{AnnotationInject: inject}
	}
	return ns
}

func TestInjectDecidesFromPodAndNamespace(t *testing.T) {
	hostNetwork := testPod(nil)
	hostNetwork.Spec.HostNetwork = true
	withProxy := testPod(nil)
	withProxy.Spec.Containers = append(withProxy.Spec.Containers, corev1.Container{Name: ProxyContainerName})
	tests := []struct {
		name string
		pod  *corev1.Pod
		ns   *corev1.Namespace
		want bool
	}{
		{"namespace enabled", testPod(nil), namespace(InjectEnabled), true},
		{"pod enabled", testPod(map[string]string{AnnotationInject: InjectEnabled}), nil, true},
		{"pod enabled in disabled namespace", testPod(map[string]string{AnnotationInject: InjectEnabled}), namespace(InjectDisabled), true},
		{"pod disabled in enabled namespace", testPod(map[string]string{AnnotationInject: InjectDisabled}), namespace(InjectEnabled), false},
		{"nobody asks", testPod(nil), namespace(""), false},
		{"no namespace known", testPod(nil), nil, false},
		{"already injected annotation", testPod(map[string]string{AnnotationInject: InjectEnabled, AnnotationInjected: "true"}), nil, false},
		{"already has a proxy container", withProxy, namespace(InjectEnabled), false},
		{"host network", hostNetwork, namespace(InjectEnabled), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			patched, injected, err := Inject(tt.pod, tt.ns, testConfig())
			if err != nil {
				t.Fatal(err)
			}
			if injected != tt.want {
				t.Fatalf("injected = %v, want %v", injected, tt.want)
			}
			if !injected && patched != tt.pod {
				t.Error("a pod that is not injected must be returned as is")
			}
		})
	}
}

func TestInjectAddsInitAndNativeSidecarProxy(t *testing.T) {
	pod := testPod(map[string]string{AnnotationInject: InjectEnabled})
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate"}}
	patched, _, err := Inject(pod, nil, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Annotations[AnnotationInjected] != "" {
		t.Fatal("Inject changed its input")
	}
	names := containerNames(patched.Spec.InitContainers)
	if want := "skein-init,skein-proxy,migrate"; names != want {
		t.Fatalf("init containers = %s, want %s", names, want)
	}
	if names := containerNames(patched.Spec.Containers); names != "web" {
		t.Fatalf("containers = %s, want web", names)
	}
	proxy := patched.Spec.InitContainers[1]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("proxy is not a native sidecar (restartPolicy Always)")
	}
	sc := proxy.SecurityContext
	if *sc.RunAsUser != ProxyUID || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("proxy security context = %+v", sc)
	}
	init := patched.Spec.InitContainers[0]
	if got := strings.Join(init.Args, " "); got != "--proxy-uid 2102" {
		t.Errorf("skein-init args = %q", got)
	}
	if caps := init.SecurityContext.Capabilities.Add; len(caps) != 2 || caps[0] != "NET_ADMIN" || caps[1] != "NET_RAW" || *init.SecurityContext.RunAsUser != 0 {
		t.Errorf("skein-init security context = %+v", init.SecurityContext)
	}
	if proxy.ReadinessProbe.HTTPGet.Path != "/ready" || proxy.LivenessProbe.HTTPGet.Path != "/live" || proxy.ReadinessProbe.HTTPGet.Port.IntValue() != AdminPort {
		t.Error("proxy probes are not /ready and /live on the admin port")
	}
	// The application starts when the sidecar has started, not when it is
	// ready: the startupProbe must wait for /ready, for two minutes.
	if sp := proxy.StartupProbe; sp == nil || sp.HTTPGet == nil || sp.HTTPGet.Path != "/ready" || sp.HTTPGet.Port.IntValue() != AdminPort ||
		sp.PeriodSeconds*sp.FailureThreshold != 120 {
		t.Errorf("proxy startupProbe = %+v, want /ready on the admin port for 120 s", sp)
	}
	if got := patched.Annotations; got[AnnotationInjected] != "true" || got[AnnotationProxyVersion] != "v1.2.3" {
		t.Errorf("annotations = %v", got)
	}
	token := findVolume(t, patched, tokenVolume).Projected.Sources[0].ServiceAccountToken
	if token.Audience != TokenAudience || *token.ExpirationSeconds != TokenExpirySeconds {
		t.Errorf("token projection = %+v", token)
	}
	for _, v := range patched.Spec.Volumes {
		if v.ConfigMap != nil {
			t.Errorf("volume %s mounts ConfigMap %s; the trust anchors travel in the proxy's environment", v.Name, v.ConfigMap.Name)
		}
	}
}

func TestInjectWithoutNativeSidecarsPutsProxyFirst(t *testing.T) {
	cfg := testConfig()
	cfg.NativeSidecars = false
	patched, _, err := Inject(testPod(nil), namespace(InjectEnabled), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := containerNames(patched.Spec.InitContainers); got != "skein-init" {
		t.Errorf("init containers = %s", got)
	}
	if got := containerNames(patched.Spec.Containers); got != "skein-proxy,web" {
		t.Errorf("containers = %s", got)
	}
	if patched.Spec.Containers[0].RestartPolicy != nil {
		t.Error("a regular container must not have a restartPolicy")
	}
	// The application starts after the proxy's postStart hook returns.
	hook := patched.Spec.Containers[0].Lifecycle
	if hook == nil || hook.PostStart == nil || hook.PostStart.Exec == nil || strings.Join(hook.PostStart.Exec.Command, " ") != "skein-proxy await -timeout 2m" {
		t.Errorf("proxy lifecycle = %+v, want a postStart hook that awaits the proxy", hook)
	}
}

func TestSupportsNativeSidecars(t *testing.T) {
	for _, tc := range []struct {
		major, minor string
		want         bool
	}{
		{"1", "28", false}, {"1", "29", true}, {"1", "33", true}, {"1", "30+", true}, {"1", "28+", false},
		{"2", "0", true}, {"", "", false}, {"1", "x", false},
	} {
		if got := SupportsNativeSidecars(tc.major, tc.minor); got != tc.want {
			t.Errorf("%q.%q: %v, want %v", tc.major, tc.minor, got, tc.want)
		}
	}
}

func TestInjectReadsAnnotations(t *testing.T) {
	pod := testPod(map[string]string{
		AnnotationInject:             InjectEnabled,
		AnnotationSkipInboundPorts:   "4190,5000-5010",
		AnnotationSkipOutboundPorts:  "3306",
		AnnotationOpaquePorts:        "3306,25",
		AnnotationProxyLogLevel:      "debug",
		AnnotationProxyCPURequest:    "100m",
		AnnotationProxyMemoryRequest: "20Mi",
		AnnotationProxyCPULimit:      "1",
		AnnotationProxyMemoryLimit:   "250Mi",
	})
	patched, _, err := Inject(pod, nil, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	init, proxy := patched.Spec.InitContainers[0], patched.Spec.InitContainers[1]
	if got, want := strings.Join(init.Args, " "), "--proxy-uid 2102 --skip-inbound-ports 4190,5000-5010 --skip-outbound-ports 3306"; got != want {
		t.Errorf("skein-init args = %q, want %q", got, want)
	}
	env := envOf(proxy)
	for name, want := range map[string]string{
		"SKEIN_PROXY_CONTROLLER_ADDR":   "skein-controller.mesh-system.svc.cluster.local:8086",
		"SKEIN_PROXY_CONTROLLER_ID":     "spiffe://mesh.test/skein/controller",
		"SKEIN_PROXY_IDENTITY":          "spiffe://mesh.test/ns/demo/sa/web-sa",
		"SKEIN_PROXY_TOKEN_FILE":        "/var/run/secrets/skein.io/identity/token",
		"SKEIN_PROXY_TRUST_ANCHORS_PEM": testAnchorsPEM,
		"SKEIN_PROXY_LABELS":            "namespace=demo,workload=web,pod=$(POD_NAME)",
		"SKEIN_PROXY_OPAQUE_PORTS":      "3306,25",
		"SKEIN_PROXY_LOG_LEVEL":         "debug",
	} {
		if env[name] != want {
			t.Errorf("%s = %q, want %q", name, env[name], want)
		}
	}
	for list, want := range map[*corev1.ResourceList]map[corev1.ResourceName]string{
		&proxy.Resources.Requests: {corev1.ResourceCPU: "100m", corev1.ResourceMemory: "20Mi"},
		&proxy.Resources.Limits:   {corev1.ResourceCPU: "1", corev1.ResourceMemory: "250Mi"},
	} {
		for name, q := range want {
			if got := (*list)[name]; got.Cmp(resource.MustParse(q)) != 0 {
				t.Errorf("resource %s = %s, want %s", name, got.String(), q)
			}
		}
	}
}

func TestInjectIdentityFromServiceAccount(t *testing.T) {
	tests := []struct {
		name           string
		serviceAccount string
		podNamespace   string
		want           string
	}{
		{"named service account", "voting", "demo", "spiffe://mesh.test/ns/demo/sa/voting"},
		{"default service account", "", "demo", "spiffe://mesh.test/ns/demo/sa/default"},
		{"namespace from the namespace object", "voting", "", "spiffe://mesh.test/ns/demo/sa/voting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod(nil)
			pod.Spec.ServiceAccountName, pod.Namespace = tt.serviceAccount, tt.podNamespace
			patched, _, err := Inject(pod, namespace(InjectEnabled), testConfig())
			if err != nil {
				t.Fatal(err)
			}
			if got := envOf(patched.Spec.InitContainers[1])["SKEIN_PROXY_IDENTITY"]; got != tt.want {
				t.Errorf("identity = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestInjectRefusesBadAnnotations(t *testing.T) {
	for _, annotation := range []string{
		AnnotationProxyCPURequest, AnnotationProxyMemoryLimit, AnnotationSkipInboundPorts,
		AnnotationSkipOutboundPorts, AnnotationOpaquePorts, AnnotationProxyLogLevel,
	} {
		t.Run(annotation, func(t *testing.T) {
			pod := testPod(map[string]string{AnnotationInject: InjectEnabled, annotation: "lots"})
			_, injected, err := Inject(pod, nil, testConfig())
			if err == nil || injected {
				t.Fatalf("Inject = injected %v, err %v; want an error", injected, err)
			}
			if !strings.Contains(err.Error(), annotation) {
				t.Errorf("error %q does not name the annotation %s", err, annotation)
			}
		})
	}
}

func containerNames(cs []corev1.Container) string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env
}

func findVolume(t *testing.T, pod *corev1.Pod, name string) corev1.VolumeSource {
	t.Helper()
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v.VolumeSource
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.VolumeSource{}
}

// TestInjectTellsTheProxyTheAppPorts: the containers' TCP ports, sorted
// and once each, become SKEIN_PROXY_INBOUND_PORTS (UDP left out), bounded
// by the proxy's limit; a pod that declares none gets no variable.
func TestInjectTellsTheProxyTheAppPorts(t *testing.T) {
	pod := testPod(map[string]string{AnnotationInject: InjectEnabled})
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "side", Ports: []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 7000}}})
	patched, _, err := Inject(pod, nil, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := envOf(patched.Spec.InitContainers[1])["SKEIN_PROXY_INBOUND_PORTS"]; got != "7000,8080,9090" {
		t.Errorf("SKEIN_PROXY_INBOUND_PORTS = %q, want 7000,8080,9090", got)
	}

	many := testPod(map[string]string{AnnotationInject: InjectEnabled})
	for p := range 100 {
		many.Spec.Containers[0].Ports = append(many.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: int32(10000 + p)})
	}
	if patched, _, err = Inject(many, nil, testConfig()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(envOf(patched.Spec.InitContainers[1])["SKEIN_PROXY_INBOUND_PORTS"], ",") + 1; got != maxInboundPorts {
		t.Errorf("%d ports passed for a pod that declares 100, want the bound %d", got, maxInboundPorts)
	}

	none := testPod(map[string]string{AnnotationInject: InjectEnabled})
	if patched, _, err = Inject(none, nil, testConfig()); err != nil {
		t.Fatal(err)
	}
	if v, ok := envOf(patched.Spec.InitContainers[1])["SKEIN_PROXY_INBOUND_PORTS"]; ok {
		t.Errorf("SKEIN_PROXY_INBOUND_PORTS = %q for a pod without ports, want unset", v)
	}
}
