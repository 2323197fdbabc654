package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// guardedDeployment: a meshed pod whose default inbound policy is deny,
// with HTTP startup, readiness and liveness probes on /id of its port.
const guardedDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: guarded}}
  template:
    metadata:
      labels: {app: guarded}
      annotations: {skein.io/default-inbound-policy: deny}
    spec:
      containers:
      - name: guarded
        image: ` + testappImage + `
        args: ["-http", ":8081", "-id", "guarded"]
        ports: [{name: http, containerPort: 8081}]
        startupProbe: {httpGet: {path: /id, port: http}, periodSeconds: 1, failureThreshold: 60}
        readinessProbe: {httpGet: {path: /id, port: http}, periodSeconds: 1, failureThreshold: 2}
        livenessProbe: {httpGet: {path: /id, port: http}, periodSeconds: 1, failureThreshold: 3}
`

// testProbesUnderDeny applies guardedDeployment with kubectl and checks
// that the stand-in kubelet's probes, sent from the node through the
// pod's proxy, keep it Ready (as kubectl reports it) while an
// unauthenticated request to another path of the same port is denied.
func (k *kube) testProbesUnderDeny(t *testing.T) {
	k.kubectl([]byte(guardedDeployment), "apply", "-f", "-")
	t.Cleanup(func() {
		// Not t.Context(): it has ended by now.
		k.c.Client.AppsV1().Deployments(shopNamespace).Delete(context.Background(), "guarded", metav1.DeleteOptions{})
	})
	readyStatus := func() string {
		return k.kubectl(nil, "-n", shopNamespace, "get", "pods", "-l", "app=guarded",
			"-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{end}`)
	}
	k.waitFor("the deny pod to be Ready", 90*time.Second, func() error {
		if s := readyStatus(); s != "True" {
			return fmt.Errorf("kubectl says Ready=%q", s)
		}
		return nil
	})
	pods := k.waitForReadyPods(shopNamespace, "app=guarded", 1)
	pod := pods[0]
	// Ready, and staying so, over more probe periods than the readiness
	// and liveness failureThresholds.
	for range 8 {
		time.Sleep(500 * time.Millisecond)
		if s := readyStatus(); s != "True" {
			t.Errorf("kubectl says the deny pod's Ready=%q", s)
		}
	}
	if p, err := k.c.Client.CoreV1().Pods(shopNamespace).Get(t.Context(), pod.Name, metav1.GetOptions{}); err != nil || p.Status.ContainerStatuses[0].RestartCount != 0 || p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("the deny pod's container is not running as it was: %+v (error %v)", p.Status.ContainerStatuses, err)
	}

	// The same port denies an unauthenticated client anything else.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: k.tester.DialContext}}
	base := "http://" + net.JoinHostPort(pod.Status.PodIP, "8081")
	if code, body, err := getBody(client, base+"/whoami"); err != nil || code != 403 {
		t.Errorf("GET /whoami from the tester: %d %q (error %v), want 403", code, body, err)
	}
	// The probes went through the proxy: it counted them as allowed
	// kubelet probes (authz_name="probe"), from the node.
	code, metrics, err := getBody(client, "http://"+net.JoinHostPort(pod.Status.PodIP, "4191")+"/metrics")
	if err != nil || code != 200 {
		t.Fatalf("the deny pod's proxy /metrics: %d %v", code, err)
	}
	var probes bool
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "inbound_http_authz_allow_total{") && strings.Contains(l, `authz_name="probe"`) && !strings.HasSuffix(l, " 0") {
			probes = true
		}
	}
	if !probes {
		t.Errorf("the deny pod's proxy counted no request allowed as a kubelet probe: the probes did not pass through it")
	}
}
