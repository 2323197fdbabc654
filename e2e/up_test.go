package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// upManifest is a gRPC service with three replicas and a client calling it
// by name, all meshed; and a service whose one replica listens only 2 s
// after it starts.
const upManifest = `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: uptest}
spec:
  selector: {app: echo}
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: echo, namespace: uptest, labels: {app: echo}}
spec:
  serviceAccountName: echo
  replicas: 3
  command: [testapp, -grpc, ":8080"]
  ports: [{name: grpc, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: uptest, labels: {app: client}}
spec:
  serviceAccountName: client
  command: [testapp, -call, "echo.uptest.svc.cluster.local:8080", -rate, "100"]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: plain, namespace: uptest, labels: {app: plain}}
spec:
  inject: false
  command: [testapp, -call, "echo.uptest.svc.cluster.local:8080", -rate, "20"]
---
apiVersion: v1
kind: Service
metadata: {name: slow, namespace: uptest}
spec:
  selector: {app: slow}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: slow, namespace: uptest, labels: {app: slow}}
spec:
  serviceAccountName: slow
  command: [sh, -c, "sleep 2 && exec testapp -id slow -http :8080"]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
`

// stuckWorkload is a replica whose readiness probe never passes: nothing
// listens on the port it probes.
const stuckWorkload = `---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: stuck, namespace: uptest, labels: {app: stuck}}
spec:
  serviceAccountName: stuck
  command: [sleep, "3600"]
  readinessProbe: {tcpSocket: {port: 8080}}
`

// checkReadyCounts waits up to a minute for skein stat KIND -n uptest -o
// json to show each row's ready and total replicas as want has them. Pod
// rows must also name their workload (the pod's name less "-i"), and those
// in served their share of the calls.
func checkReadyCounts(t *testing.T, api, kind string, want map[string][2]int, served ...string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		out, err := skein(context.Background(), "stat", kind, "-n", "uptest", "--api", api, "-o", "json")
		last = out
		var resp struct {
			Rows []statRow `json:"rows"`
		}
		if err != nil || json.Unmarshal([]byte(out), &resp) != nil {
			continue
		}
		matched := 0
		for _, r := range resp.Rows {
			w, ok := want[r.Name]
			if !ok || r.Ready == nil || *r.Ready != w[0] || r.Total != w[1] {
				continue
			}
			if kind == "pod" && (r.Workload != r.Name[:strings.LastIndex(r.Name, "-")] ||
				slices.Contains(served, r.Name) && (r.RPS == nil || *r.RPS == 0)) {
				continue
			}
			matched++
		}
		if matched == len(want) {
			return
		}
	}
	t.Errorf("skein stat %s never showed ready/total %v (with traffic at %v):\n%s", kind, want, served, last)
}

// hostTraces is what the machine looks like outside any namespace of
// ours: links, firewall rules and routes (mounts: see meshMounts).
func hostTraces(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, args := range map[string][]string{
		"links":    {"ip", "-o", "link", "show"},
		"rules":    {"iptables-save"},
		"routes":   {"ip", "route", "show"},
		"ip rules": {"ip", "rule", "show"},
	} {
		b, err := exec.Command(args[0], args[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		// iptables-save prints a timestamp and counters; keep the rules.
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		out[name] = strings.Join(lines, "\n")
	}
	return out
}

// meshMounts lists the mounts of the network namespaces of the skein up
// mesh whose controller host is controllerNS (skein-ID-skein-controller):
// only that network's, since other tests running at the same time make
// and remove networks of their own under the same prefix.
func meshMounts(controllerNS string) []string {
	prefix := strings.TrimSuffix(controllerNS, "skein-controller")
	mounts, _ := os.ReadFile("/proc/self/mounts")
	var ours []string
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, "/run/netns/"+prefix) || strings.Contains(l, "/etc/netns/"+prefix) {
			ours = append(ours, l)
		}
	}
	return ours
}

// upControllerNamespace finds the namespace of the skein up mesh's
// controller host that was not there in before (a /run/netns listing).
func upControllerNamespace(t *testing.T, before []os.DirEntry) string {
	t.Helper()
	had := map[string]bool{}
	for _, e := range before {
		had[e.Name()] = true
	}
	now, _ := os.ReadDir("/run/netns")
	for _, e := range now {
		if strings.HasSuffix(e.Name(), "-skein-controller") && !had[e.Name()] {
			return e.Name()
		}
	}
	t.Fatal("no network namespace of the skein up mesh's controller")
	return ""
}

// skeinUp runs `skein up -d` on manifest with a state directory of the
// test's own and returns it; the mesh is taken down when the test ends.
func skeinUp(t *testing.T, manifest string) (stateDir, manifestPath string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "skein-e2e-up-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The proxies run as their own uid and read their tokens in here.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifestPath = filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(manifestPath, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir = filepath.Join(dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := skein(ctx, "up", "-d", "-f", manifestPath, "--state-dir", stateDir); err != nil {
		t.Fatalf("skein up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"controller", "echo-0.proxy", "client-0", "client-0.proxy"} {
				b, _ := os.ReadFile(filepath.Join(stateDir, "logs", name+".log"))
				t.Logf("--- %s log:\n%s", name, tail(string(b), 20))
			}
		}
		skein(context.Background(), "down", "--state-dir", stateDir)
	})
	return stateDir, manifestPath
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// clientReport reads the last per-replica report the client printed.
func clientReport(t *testing.T, stateDir string) (calls map[string]int, failures int) {
	t.Helper()
	return callerReport(t, stateDir, "client-0")
}

// callerReport reads the last per-replica report a `testapp -call` replica
// printed.
func callerReport(t *testing.T, stateDir, replica string) (calls map[string]int, failures int) {
	t.Helper()
	f, err := os.Open(filepath.Join(stateDir, "logs", replica+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last struct {
		Calls    map[string]int `json:"calls"`
		Failures int            `json:"failures"`
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "{") {
			json.Unmarshal(sc.Bytes(), &last)
		}
	}
	return last.Calls, last.Failures
}

func TestSkeinUpRunsAMeshAndDownRemovesIt(t *testing.T) {
	requireRoot(t)
	before := hostTraces(t)
	m := startUpMesh(t, upManifest)
	stateDir, manifestPath := m.stateDir, m.manifestPath
	controllerNS := m.prefix + "skein-controller"
	if len(meshMounts(controllerNS)) == 0 {
		t.Fatalf("no mounts of the mesh's namespaces (%s) while it runs", controllerNS)
	}
	// -d returns once every replica's probe has passed: the replica that
	// listens 2 s after it starts already serves its service, through the
	// hub's virtual IP (an unmeshed client, so no retry of a proxy helps).
	if code, body, err := getBody(podHTTP(t, m.pod(t, "uptest-plain-0")), "http://slow.uptest.svc.cluster.local:8080/id"); err != nil || code != 200 {
		t.Errorf("right after skein up -d returned, GET slow/id from an unmeshed replica: %d %q %v; want 200 (up returned before the replica was ready)", code, body, err)
	}
	// ... and the controller had applied it, so a meshed client's proxy
	// finds the replica too.
	if code, body, err := getBody(podHTTP(t, m.pod(t, "uptest-client-0")), "http://slow.uptest.svc.cluster.local:8080/id"); err != nil || code != 200 {
		t.Errorf("right after skein up -d returned, GET slow/id from a meshed replica: %d %q %v; want 200", code, body, err)
	}
	if log, err := os.ReadFile(filepath.Join(filepath.Dir(stateDir), "up.log")); err != nil || strings.Contains(string(log), "going on") {
		t.Errorf("skein up did not see every replica ready and applied by the controller before it said up (%v):\n%s", err, log)
	}

	// Calls by service name spread over the three replicas, per request.
	// Counted from when all three serve: before that, the client (which
	// starts with them) may call a service with fewer or no replicas yet.
	var base map[string]int
	var baseFailures int
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		base, baseFailures = clientReport(t, stateDir)
		if base["echo-0"] > 0 && base["echo-1"] > 0 && base["echo-2"] > 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(base) < 3 {
		t.Fatalf("the client never reached all three replicas: %v", base)
	}
	// 3,000 sequential calls on the client's one connection (100 a second;
	// the client reports every 2 s, so a few more).
	const wantCalls = 3000
	var calls map[string]int
	var failures, total int
	for deadline := time.Now().Add(60 * time.Second); total < wantCalls && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		calls, failures = clientReport(t, stateDir)
		total = 0
		for r := range calls {
			calls[r] -= base[r]
			total += calls[r]
		}
		failures -= baseFailures
	}
	if total < wantCalls {
		t.Fatalf("the client made only %d successful calls in 60 s, want %d (%d failed): %v", total, wantCalls, failures, calls)
	}
	t.Logf("client calls per replica: %v (%d in all), failures %d", calls, total, failures)
	// Per request, not per connection: one client connection reaches every
	// replica, and identical replicas share its calls evenly.
	for _, r := range []string{"echo-0", "echo-1", "echo-2"} {
		if share := float64(calls[r]) / float64(total); share < 0.25 || share > 0.42 {
			t.Errorf("replica %s got %.1f%% of %d calls over one client connection, want 25%%..42%% (%v)", r, 100*share, total, calls)
		}
	}
	if failures > 0 {
		t.Errorf("%d calls failed once every replica was serving", failures)
	}

	// A workload without a proxy reaches the service too, balanced per
	// connection by the hub as kube-proxy would.
	plainCalls, plainFailures := callerReport(t, stateDir, "plain-0")
	if sum(plainCalls) == 0 {
		t.Errorf("the unmeshed workload reached no replica (failures: %d)", plainFailures)
	}
	t.Logf("unmeshed client calls per replica: %v", plainCalls)

	// Scaling up in the manifest brings a fourth replica into rotation;
	// a workload added with it whose probe never passes is counted as not
	// ready.
	scaled := strings.Replace(upManifest, "replicas: 3", "replicas: 4", 1) + stuckWorkload
	if err := os.WriteFile(manifestPath, []byte(scaled), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	if !waitFor(60*time.Second, func() bool { c, _ := clientReport(t, stateDir); return c["echo-3"] > 0 }) {
		t.Errorf("after scaling to 4 replicas in the manifest, echo-3 got no call within a minute")
	} else {
		t.Logf("echo-3 answered within %v of the manifest edit", time.Since(edited).Round(100*time.Millisecond))
	}

	api := "unix:" + filepath.Join(stateDir, "api.sock")
	checkReadyCounts(t, api, "workload", map[string][2]int{"echo": {4, 4}, "stuck": {0, 1}, "slow": {1, 1}})
	checkReadyCounts(t, api, "pod", map[string][2]int{"echo-0": {1, 1}, "echo-1": {1, 1}, "echo-2": {1, 1}, "echo-3": {1, 1}, "stuck-0": {0, 1}},
		"echo-0", "echo-1", "echo-2")

	// skein edges shows the edge with both identities, over mTLS.
	var edgeErr error
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := skein(context.Background(), "edges", "-n", "uptest", "--api", api, "-o", "json")
		if edgeErr = checkEdge(out, err); edgeErr == nil {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if edgeErr != nil {
		t.Error(edgeErr)
	}

	if out, err := skein(context.Background(), "down", "--state-dir", stateDir); err != nil {
		t.Fatalf("skein down: %v\n%s", err, out)
	}
	after := hostTraces(t)
	for what, was := range before {
		if after[what] != was {
			t.Errorf("skein down left %s changed:\nbefore:\n%s\nafter:\n%s", what, was, after[what])
		}
	}
	if left := meshMounts(controllerNS); len(left) > 0 {
		t.Errorf("skein down left mounts of the mesh's namespaces:\n%s", strings.Join(left, "\n"))
	}
	if out, _ := exec.Command("pgrep", "-f", stateDir).Output(); len(out) > 0 {
		t.Errorf("processes of the mesh still running after skein down: %s", out)
	}
	if _, err := os.Stat(stateDir); err == nil {
		t.Errorf("state directory %s left after skein down", stateDir)
	}
}

// checkEdge wants an mTLS edge client -> echo in `skein edges -o json`.
func checkEdge(out string, err error) error {
	if err != nil {
		return err
	}
	var resp struct {
		Edges []struct {
			SrcWorkload string `json:"src_workload"`
			DstWorkload string `json:"dst_workload"`
			ClientID    string `json:"client_id"`
			ServerID    string `json:"server_id"`
			TLS         string `json:"tls"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return fmt.Errorf("skein edges -o json: %v\n%s", err, out)
	}
	for _, e := range resp.Edges {
		if e.SrcWorkload == "client" && e.DstWorkload == "echo" {
			if e.ClientID != "spiffe://cluster.local/ns/uptest/sa/client" || e.ServerID != "spiffe://cluster.local/ns/uptest/sa/echo" || e.TLS != "true" {
				return fmt.Errorf("edge client -> echo has client_id %q, server_id %q, tls %q; want both identities over mTLS", e.ClientID, e.ServerID, e.TLS)
			}
			return nil
		}
	}
	return fmt.Errorf("no edge client -> echo in skein edges:\n%s", out)
}

func TestSkeinUpRefusesBadManifestsAndStartsNothing(t *testing.T) {
	requireRoot(t)
	cases := []struct {
		name, manifest string
		want           []string
	}{
		{"unknown kind", "apiVersion: v1\nkind: Deployment\nmetadata: {name: web}\n", []string{"mesh.yaml", "document 1", "kind", "Deployment"}},
		{"a Deployment beside a Namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {}\n",
			[]string{"mesh.yaml: document 2: kind: apps/v1 Deployment is not run here: describe the process as a skein.io/v1alpha1 Workload (spec.command, spec.replicas)"}},
		{"a ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: b}\n", []string{"mesh.yaml: document 1: kind: unknown kind \"ConfigMap\" of apiVersion \"v1\""}},
		{"missing command", "apiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: web, namespace: shop}\nspec: {}\n", []string{"mesh.yaml", "Workload shop/web", "spec.command"}},
		{"duplicate name", "apiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec: {command: [a]}\n---\napiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec: {command: [b]}\n", []string{"mesh.yaml", "document 2", "Workload default/web", "metadata.name"}},
		{"port conflict", "apiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec:\n  command: [a]\n  ports: [{name: a, containerPort: 8080}, {name: b, containerPort: 8080}]\n", []string{"mesh.yaml", "Workload default/web", "spec.ports[1].containerPort", "8080"}},
		{"port of the proxy", "apiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec:\n  command: [a]\n  ports: [{name: a, containerPort: 4143}]\n", []string{"Workload default/web", "spec.ports[0].containerPort", "proxy"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mesh.yaml")
			os.WriteFile(path, []byte(c.manifest), 0o644)
			before, _ := exec.Command("ip", "netns", "list").Output()
			state := filepath.Join(dir, "state")
			out, err := skein(context.Background(), "up", "-f", path, "--state-dir", state)
			if err == nil {
				t.Fatal("skein up accepted a bad manifest")
			}
			for _, w := range c.want {
				if !strings.Contains(out+err.Error(), w) {
					t.Errorf("message does not name %q:\n%v", w, err)
				}
			}
			if _, err := os.Stat(state); err == nil {
				t.Error("a state directory was made for a refused manifest")
			}
			if after, _ := exec.Command("ip", "netns", "list").Output(); string(after) != string(before) {
				t.Errorf("namespaces changed for a refused manifest:\n%s", after)
			}
		})
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestSkeinUpSaysWhatItNeedsWhenNotRoot(t *testing.T) {
	requireRoot(t) // to switch to another user
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		filepath.Join(binDir, "skein"), "up", "-f", "/nonexistent.yaml", "--state-dir", t.TempDir()).CombinedOutput()
	if err == nil {
		t.Fatalf("skein up as an unprivileged user succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "needs root") {
		t.Errorf("skein up as an unprivileged user said %q; want it to say it needs root", out)
	}
}
