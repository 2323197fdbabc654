package kubelet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/internal/testenv/cluster"
)

const (
	testImage     = "skein/testapp"
	tokenAudience = "identity.skein.io"
	tokenMount    = "/var/run/secrets/skein.io/identity"
)

// TestDeploymentPodsRunAndServeTheirService runs a Deployment through the
// stand-in kubelet: the pods are bound to its node, run for real, become
// ready, get published in the Service's EndpointSlice and answer HTTP from
// another host, as do their sidecars; their projected tokens authenticate
// for the pod, and a scale-down deletes a pod's object without waiting
// out its grace period.
func TestDeploymentPodsRunAndServeTheirService(t *testing.T) {
	network := testenv.NewNetwork(t)
	c := cluster.Start(t, network)
	client := c.Client
	ctx := t.Context()
	testapp := buildTestapp(t)
	tokenDir := t.TempDir()
	startKubelet(t, Config{
		Client:   client,
		NodeName: "stand-in",
		Network:  network,
		Images:   map[string]string{testImage: testapp},
		TokenDir: tokenDir,
	})

	ns := createNamespace(t, client)
	labels := map[string]string{"app": "web"}
	if _, err := client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8081)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Service: %v", err)
	}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, webDeployment(labels), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Deployment: %v", err)
	}

	endpoints := waitForReadyEndpoints(t, client, ns, "web", 2)
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatalf("listing pods: %v", err)
	}
	podNameByIP := map[string]string{}
	for _, p := range pods.Items {
		podNameByIP[p.Status.PodIP] = p.Name
	}

	client1 := testenv.AddHost(t, network, "client")
	httpClient := &http.Client{Transport: &http.Transport{DialContext: client1.DialContext}, Timeout: 5 * time.Second}
	for _, ip := range endpoints {
		t.Run("pod "+ip, func(t *testing.T) {
			name, ok := podNameByIP[ip]
			if !ok {
				t.Fatalf("endpoint %s is no pod's IP (pods: %v)", ip, podNameByIP)
			}
			// testapp answers /id with $POD_NAME, set from a fieldRef.
			if got := httpGet(t, httpClient, "http://"+ip+":8081/id"); got != name {
				t.Errorf("GET /id from pod %s = %q, want its name", ip, got)
			}
			if got := httpGet(t, httpClient, "http://"+ip+":8082/id"); got != "sidecar" {
				t.Errorf("GET /id from the sidecar of pod %s = %q, want sidecar", ip, got)
			}
			pod := podByName(pods.Items, name)
			checkToken(t, client, tokenDir, pod)
			checkMountedToken(t, network, tokenDir, pod)
		})
	}

	t.Run("ServiceClusterIPReachesThePods", func(t *testing.T) {
		svc, err := client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The service proxy DNATs each new connection to a ready pod.
		seen := map[string]bool{}
		for range 40 {
			seen[httpGet(t, noKeepAlive(client1.DialContext), "http://"+svc.Spec.ClusterIP+"/id")] = true
		}
		for _, p := range pods.Items {
			if !seen[p.Name] {
				t.Errorf("pod %s never answered on the Service's cluster IP (answers: %v)", p.Name, seen)
			}
		}
	})

	t.Run("ScaleDownDeletesThePodObject", func(t *testing.T) {
		scale, err := client.AppsV1().Deployments(ns).GetScale(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting scale: %v", err)
		}
		scale.Spec.Replicas = 1
		if _, err := client.AppsV1().Deployments(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("scaling to 1: %v", err)
		}
		// The pods' grace period is 30 s; the kubelet ends it as soon as
		// the processes are gone.
		deadline, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for {
			pods, err := client.CoreV1().Pods(ns).List(deadline, metav1.ListOptions{LabelSelector: "app=web"})
			if err == nil && len(pods.Items) == 1 {
				break
			}
			select {
			case <-deadline.Done():
				t.Fatalf("pods still there after scaling to 1: %v (error %v)", pods, err)
			case <-time.After(200 * time.Millisecond):
			}
		}
		waitForReadyEndpoints(t, client, ns, "web", 1)
	})
}

func webDeployment(labels map[string]string) *appsv1.Deployment {
	expiry := int64(600)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					// A native sidecar, started and ready before the
					// container starts.
					InitContainers: []corev1.Container{{
						Name:          "sidecar",
						Image:         testImage,
						Args:          []string{"-http", ":8082", "-id", "sidecar"},
						RestartPolicy: new(corev1.ContainerRestartPolicyAlways),
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
							TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8082)},
						}},
					}},
					Containers: []corev1.Container{{
						Name:  "web",
						Image: testImage,
						Args:  []string{"-http", ":8081"},
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "TOKEN_FILE", Value: tokenMount + "/token"},
						},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8081}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
							HTTPGet: &corev1.HTTPGetAction{Path: "/id", Port: intstr.FromString("http")},
						}},
						SecurityContext: &corev1.SecurityContext{RunAsUser: new(int64(2102))},
						VolumeMounts:    []corev1.VolumeMount{{Name: "identity", MountPath: tokenMount, ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{
						Name: "identity",
						VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
							Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
								Audience: tokenAudience, ExpirationSeconds: &expiry, Path: "token",
							}}},
						}},
					}},
				},
			},
		},
	}
}

// checkToken reads the pod's projected token where the kubelet puts it and
// checks that the API server authenticates it as the pod's service
// account, for the audience the pod asked for.
func checkToken(t *testing.T, client kubernetes.Interface, tokenDir string, pod *corev1.Pod) {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(tokenDir, string(pod.UID), "identity", "token"))
	if err != nil {
		t.Fatalf("reading the pod's token: %v", err)
	}
	review, err := client.AuthenticationV1().TokenReviews().Create(t.Context(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: string(token), Audiences: []string{tokenAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating TokenReview: %v", err)
	}
	if !review.Status.Authenticated {
		t.Fatalf("token not authenticated: %s", review.Status.Error)
	}
	if want := "system:serviceaccount:" + pod.Namespace + ":default"; review.Status.User.Username != want {
		t.Errorf("token user = %q, want %q", review.Status.User.Username, want)
	}
	if got := review.Status.User.Extra["authentication.kubernetes.io/pod-name"]; !slices.Equal(got, []string{pod.Name}) {
		t.Errorf("token bound to pod %q, want %q", got, pod.Name)
	}
}

// checkMountedToken reads the token where the pod's container sees it, at
// its mountPath inside the container's own mount namespace.
func checkMountedToken(t *testing.T, network *netns.Network, tokenDir string, pod *corev1.Pod) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(tokenDir, string(pod.UID), "identity", "token"))
	if err != nil {
		t.Fatal(err)
	}
	host, ok := network.Host(HostName(pod))
	if !ok {
		t.Fatalf("pod %s has no host", pod.Name)
	}
	out, err := exec.Command("ip", "netns", "pids", host.Namespace).Output()
	if err != nil {
		t.Fatalf("listing the pod's processes: %v", err)
	}
	// /var/run is an absolute symbolic link to /run, which would resolve in
	// the test's mount namespace rather than the container's.
	mountPath := strings.Replace(tokenMount, "/var/run/", "/run/", 1)
	for _, pid := range strings.Fields(string(out)) {
		got, err := os.ReadFile(filepath.Join("/proc", pid, "root", mountPath, "token"))
		if err == nil && string(got) == string(want) {
			return
		}
	}
	t.Errorf("no process of pod %s sees its token at %s (pids %q)", pod.Name, tokenMount, out)
}

func noKeepAlive(dial func(context.Context, string, string) (net.Conn, error)) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}, Timeout: 5 * time.Second}
}

func startKubelet(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kubelet: %v", err)
		}
	})
}

func buildTestapp(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "testapp")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", out, "github.com/skeinmesh/skein/e2e/testapp")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building testapp: %v\n%s", err, b)
	}
	// Containers run as another user, who must be able to reach the binary.
	if err := os.Chmod(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitForReadyEndpoints waits until the Service's EndpointSlices list want
// ready endpoints and returns their addresses.
func waitForReadyEndpoints(t *testing.T, client kubernetes.Interface, ns, service string, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var ready []string
	for {
		slices, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + service,
		})
		if err == nil {
			ready = readyAddresses(slices.Items)
			if len(ready) == want {
				return ready
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Service %s has ready endpoints %v, want %d (last error %v)", service, ready, want, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readyAddresses(slices []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	return out
}

func httpGet(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return strings.TrimSpace(string(body))
}

func podByName(pods []corev1.Pod, name string) *corev1.Pod {
	for i := range pods {
		if pods[i].Name == name {
			return &pods[i]
		}
	}
	return nil
}

func createNamespace(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	ns, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubelet-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// TestNativeSidecarGatesOnStartupNotReadiness holds the stand-in kubelet to
// a real one's rule (1.29+): the container after a native sidecar starts
// once the sidecar has started (its startupProbe passed), whether or not
// the sidecar is ready; a sidecar whose startupProbe never passes keeps it
// from starting at all.
func TestNativeSidecarGatesOnStartupNotReadiness(t *testing.T) {
	network := testenv.NewNetwork(t)
	c := cluster.Start(t, network)
	client := c.Client
	ctx := t.Context()
	startKubelet(t, Config{
		Client:   client,
		NodeName: "stand-in",
		Network:  network,
		Images:   map[string]string{testImage: buildTestapp(t)},
		TokenDir: t.TempDir(),
	})
	ns := createNamespace(t, client)
	tcp := func(port int32) corev1.ProbeHandler {
		return corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}
	}
	pod := func(name string, startup *corev1.Probe) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{
					Name: "sidecar", Image: testImage, Args: []string{"-http", ":8082"},
					RestartPolicy: new(corev1.ContainerRestartPolicyAlways),
					StartupProbe:  startup,
					// Nothing listens on port 9: never ready.
					ReadinessProbe: &corev1.Probe{ProbeHandler: tcp(9)},
				}},
				Containers: []corev1.Container{{Name: "app", Image: testImage, Args: []string{"-http", ":8081"}}},
			},
		}
	}
	for _, p := range []*corev1.Pod{
		pod("started-unready", &corev1.Probe{ProbeHandler: tcp(8082), PeriodSeconds: 1, FailureThreshold: 30}),
		pod("never-started", &corev1.Probe{ProbeHandler: tcp(9), PeriodSeconds: 1, FailureThreshold: 3}),
	} {
		if _, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitForPod := func(name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil && cond(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s: %s did not happen in 30s; status %+v (error %v)", name, what, p.Status, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	running := func(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
		for i := range statuses {
			if statuses[i].Name == name && statuses[i].State.Running != nil {
				return &statuses[i]
			}
		}
		return nil
	}

	p := waitForPod("started-unready", "the app running", func(p *corev1.Pod) bool {
		return running(p.Status.ContainerStatuses, "app") != nil
	})
	sidecar := running(p.Status.InitContainerStatuses, "sidecar")
	if sidecar == nil || sidecar.Ready || sidecar.Started == nil || !*sidecar.Started {
		t.Errorf("sidecar status %+v, want running, started and not ready", sidecar)
	}
	if podReady := podCondition(p, corev1.PodReady); podReady {
		t.Error("pod is Ready with an unready sidecar")
	}

	p = waitForPod("never-started", "the startup probe's failure", func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodInitialized && strings.Contains(c.Message, "startup probe failed") {
				return true
			}
		}
		return false
	})
	if app := running(p.Status.ContainerStatuses, "app"); app != nil {
		t.Errorf("the app started after a sidecar that never did: %+v", app)
	}
}

// TestDeletedPodStopsItsSidecarAfterItsApplication deletes a pod with a
// native sidecar: as a kubelet does, the application gets SIGTERM first,
// and the sidecar only once the application has exited, so that a proxy
// sidecar keeps serving its application while it shuts down.
func TestDeletedPodStopsItsSidecarAfterItsApplication(t *testing.T) {
	network := testenv.NewNetwork(t)
	c := cluster.Start(t, network)
	client := c.Client
	ctx := t.Context()
	tokenDir := t.TempDir()
	startKubelet(t, Config{
		Client:   client,
		NodeName: "stand-in",
		Network:  network,
		Images:   map[string]string{testImage: buildTestapp(t)},
		TokenDir: tokenDir,
	})
	ns := createNamespace(t, client)
	pod, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ordered"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{
				Name: "sidecar", Image: testImage, Args: []string{"-http", ":8082"},
				RestartPolicy: new(corev1.ContainerRestartPolicyAlways),
			}},
			Containers: []corev1.Container{{Name: "app", Image: testImage, Args: []string{"-http", ":8081"}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logOf := func(container string) string {
		b, _ := os.ReadFile(filepath.Join(tokenDir, string(pod.UID), container+".log"))
		return string(b)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen in 30 s; app log %q, sidecar log %q", what, logOf("app"), logOf("sidecar"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitUntil("the app started", func() bool { return strings.Contains(logOf("app"), "ready") })
	if err := client.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil("the sidecar exited", func() bool { return strings.Contains(logOf("sidecar"), "exiting") })
	stamp := func(container, word string) int64 {
		t.Helper()
		for line := range strings.Lines(logOf(container)) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), word+" "); ok {
				var n int64
				if _, err := fmt.Sscan(rest, &n); err == nil {
					return n
				}
			}
		}
		t.Fatalf("%s's log has no %q line: %q", container, word, logOf(container))
		return 0
	}
	if appExited, sidecarTerm := stamp("app", "exiting"), stamp("sidecar", "terminating"); sidecarTerm < appExited {
		t.Errorf("the sidecar got SIGTERM %v before the app had exited", time.Duration(appExited-sidecarTerm))
	}
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
