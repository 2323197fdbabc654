package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/testenv"
)

const identityAudience = "identity.skein.io"

// TestControlPlane starts one cluster and checks what later tests build on;
// the subtests share it because a start costs 10-20 s.
func TestControlPlane(t *testing.T) {
	c := Start(t, testenv.NewNetwork(t))
	ctx := t.Context()
	ns := createNamespace(t, c.Client, "control-plane")

	t.Run("TokenReviewChecksAudienceAndServiceAccount", func(t *testing.T) {
		testTokenReview(ctx, t, c.Client, ns)
	})
	t.Run("EndpointSliceFollowsPodStatus", func(t *testing.T) {
		testEndpointSlice(ctx, t, c.Client, ns)
	})
	t.Run("KubectlUsesTheKubeconfig", func(t *testing.T) {
		out, err := c.Kubectl(ctx, "get", "namespace", ns, "-o", "name").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl: %v\n%s", err, out)
		}
		if got, want := strings.TrimSpace(string(out)), "namespace/"+ns; got != want {
			t.Errorf("kubectl printed %q, want %q", got, want)
		}
	})
}

func testTokenReview(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string) {
	const sa = "workload"
	createServiceAccount(t, client, ns, sa)
	tests := []struct {
		name          string
		tokenAudience string
		wantAuth      bool
	}{
		{"identity audience is authenticated", identityAudience, true},
		{"other audience is refused", "other.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := requestToken(ctx, t, client, ns, sa, tt.tokenAudience)
			review, err := client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
				Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{identityAudience}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("creating TokenReview: %v", err)
			}
			status := review.Status
			if status.Authenticated != tt.wantAuth {
				t.Fatalf("authenticated = %v (error %q), want %v", status.Authenticated, status.Error, tt.wantAuth)
			}
			if !tt.wantAuth {
				return
			}
			if want := fmt.Sprintf("system:serviceaccount:%s:%s", ns, sa); status.User.Username != want {
				t.Errorf("username = %q, want %q", status.User.Username, want)
			}
			if len(status.Audiences) != 1 || status.Audiences[0] != identityAudience {
				t.Errorf("audiences = %q, want [%s]", status.Audiences, identityAudience)
			}
		})
	}
}

// testEndpointSlice plays the kubelet's part: a Pod placed on a node gets an
// IP and readiness in its status, and the real endpoint-slice controller
// must publish it for the Service that selects it.
func testEndpointSlice(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string) {
	const (
		sa     = "server"
		podIP  = "198.18.0.10"
		nodeIP = "198.18.0.1"
	)
	createServiceAccount(t, client, ns, sa)
	node := createNode(t, client, "stand-in-"+ns, nodeIP)
	labels := map[string]string{"app": "server"}
	_, err := client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 8080, TargetPort: intstr.FromInt32(9090)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Service: %v", err)
	}
	pod, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "server-0", Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: sa,
			Containers: []corev1.Container{{
				Name:  "server",
				Image: "skein/testapp",
				Ports: []corev1.ContainerPort{{ContainerPort: 9090}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Pod: %v", err)
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		HostIP: nodeIP, HostIPs: []corev1.HostIP{{IP: nodeIP}},
		PodIP: podIP, PodIPs: []corev1.PodIP{{IP: podIP}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating Pod status: %v", err)
	}

	var last string
	deadline, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		slices, err := client.DiscoveryV1().EndpointSlices(ns).List(deadline, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=server",
		})
		if err == nil {
			if last = describeEndpoints(slices.Items); last == podIP+":9090 ready" {
				return
			}
		}
		select {
		case <-deadline.Done():
			t.Fatalf("EndpointSlice of Service server has %q, want %q (last error %v)", last, podIP+":9090 ready", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// describeEndpoints renders slices as "IP:PORT ready|not-ready" entries.
func describeEndpoints(slices []discoveryv1.EndpointSlice) string {
	var out []string
	for _, s := range slices {
		for _, e := range s.Endpoints {
			ready := "not-ready"
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ready = "ready"
			}
			for _, addr := range e.Addresses {
				for _, p := range s.Ports {
					if p.Port != nil {
						out = append(out, fmt.Sprintf("%s:%d %s", addr, *p.Port, ready))
					}
				}
			}
		}
	}
	return strings.Join(out, ", ")
}

func createNamespace(t *testing.T, client kubernetes.Interface, prefix string) string {
	t.Helper()
	ns, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

func createServiceAccount(t *testing.T, client kubernetes.Interface, ns, name string) {
	t.Helper()
	_, err := client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating ServiceAccount %s/%s: %v", ns, name, err)
	}
}

// createNode registers a Node for pods to be placed on: the endpoint-slice
// controller skips pods whose node it cannot find.
func createNode(t *testing.T, client kubernetes.Interface, name, ip string) string {
	t.Helper()
	_, err := client.CoreV1().Nodes().Create(t.Context(), &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Node %s: %v", name, err)
	}
	return name
}

func requestToken(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, sa, audience string) string {
	t.Helper()
	expiry := int64(10 * time.Minute / time.Second)
	resp, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting token for %s/%s, audience %s: %v", ns, sa, audience, err)
	}
	return resp.Status.Token
}
