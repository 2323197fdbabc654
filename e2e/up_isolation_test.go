package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// isolationManifest is written as for Kubernetes: a Namespace (read for
// its skein.io/ annotations), a ServiceAccount (which skein up leaves out,
// with a note), and two meshed workloads, b calling a.
const isolationManifest = `apiVersion: v1
kind: Namespace
metadata: {name: isotest}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: a, namespace: isotest}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: isotest}
spec:
  selector: {app: a}
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: a, namespace: isotest, labels: {app: a}}
spec:
  serviceAccountName: a
  command: [testapp, -id, isotest-a, -grpc, ":8080"]
  ports: [{name: grpc, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: b, namespace: isotest, labels: {app: b}}
spec:
  serviceAccountName: b
  command: [testapp, -id, isotest-b, -call, "a.isotest.svc.cluster.local:8080", -rate, "20"]
`

// TestSkeinUpAcceptsNamespaceDocumentsAndIsolatesWorkloads runs the real
// `skein up` on manifests that start with a Namespace and a
// ServiceAccount: the ServiceAccount is left out with a note naming file
// and object, the Namespace is read (its annotations are policy).
// Then, as each workload's own process (its uid, inside its host), the
// issuer key, the join-token signing key and every join token are
// unreadable; each proxy reads only its own workload's token; and the two
// workloads and their proxies all run as different users, none root.
func TestSkeinUpAcceptsNamespaceDocumentsAndIsolatesWorkloads(t *testing.T) {
	requireRoot(t)
	stateDir, manifestPath := skeinUp(t, isolationManifest)

	upLog, err := os.ReadFile(filepath.Join(filepath.Dir(stateDir), "up.log"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`msg="manifest document ignored" file=%s document=2 kind="v1 ServiceAccount" namespace=isotest name=a`, manifestPath)
	if !strings.Contains(string(upLog), want) {
		t.Errorf("skein up's log does not say %s:\n%s", want, tail(string(upLog), 20))
	}
	if strings.Contains(string(upLog), `kind="v1 Namespace"`) {
		t.Errorf("skein up left the Namespace out; it is read for its annotations:\n%s", tail(string(upLog), 20))
	}

	// Traffic flows with the applications under their own users.
	if !waitFor(60*time.Second, func() bool { c, _ := callerReport(t, stateDir, "b-0"); return c["isotest-a"] > 0 }) {
		c, f := callerReport(t, stateDir, "b-0")
		t.Fatalf("b never reached a: calls %v, failures %d", c, f)
	}

	appA := findProcess(t, "testapp", "isotest-a")
	appB := findProcess(t, "testapp", "isotest-b")
	proxyA := findProcess(t, "skein-proxy", "spiffe://cluster.local/ns/isotest/sa/a")
	proxyB := findProcess(t, "skein-proxy", "spiffe://cluster.local/ns/isotest/sa/b")
	uids := map[int]string{}
	for _, p := range []struct {
		name string
		pid  int
	}{{"a's application", appA}, {"b's application", appB}, {"a's proxy", proxyA}, {"b's proxy", proxyB}} {
		uid := processUID(t, p.pid)
		if uid == 0 {
			t.Errorf("%s runs as root", p.name)
		}
		if other, dup := uids[uid]; dup {
			t.Errorf("%s and %s both run as uid %d", p.name, other, uid)
		}
		uids[uid] = p.name
	}
	t.Logf("users: %v", uids)

	tokenA := filepath.Join(stateDir, "tokens", "isotest-a-0.token")
	tokenB := filepath.Join(stateDir, "tokens", "isotest-b-0.token")
	issuerKey := filepath.Join(stateDir, "identity", "tls.key")
	signingKey := filepath.Join(stateDir, "identity", "join-token.key")
	for _, f := range []string{tokenA, tokenB, issuerKey, signingKey} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v (the test's paths are out of date)", err)
		}
	}
	cases := []struct {
		who      string
		pid      int
		file     string
		readable bool
	}{
		{"a's application", appA, issuerKey, false},
		{"a's application", appA, signingKey, false},
		{"a's application", appA, tokenB, false},
		{"a's application", appA, tokenA, false},
		{"b's application", appB, tokenA, false},
		{"a's proxy", proxyA, tokenA, true},
		{"a's proxy", proxyA, tokenB, false},
		{"a's proxy", proxyA, issuerKey, false},
		{"a's proxy", proxyA, signingKey, false},
	}
	for _, c := range cases {
		out, err := catAs(c.pid, c.file)
		switch {
		case c.readable && err != nil:
			t.Errorf("%s cannot read %s: %v: %s", c.who, filepath.Base(c.file), err, out)
		case !c.readable && !strings.Contains(out, "Permission denied"):
			t.Errorf("%s reading %s: %v %q, want Permission denied", c.who, filepath.Base(c.file), err, out)
		}
	}
}

// findProcess returns the pid of the one process whose program is named
// prog and whose command line contains marker.
func findProcess(t *testing.T, prog, marker string) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var found []int
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) == prog && bytes.Contains(b, []byte("\x00"+marker+"\x00")) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d processes %s with %q, want one: %v", len(found), prog, marker, found)
	}
	return found[0]
}

// processUID is the real uid of pid.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

// catAs runs cat on file as pid's user and groups, inside its network and
// mount namespaces: what that process itself could read.
func catAs(pid int, file string) (string, error) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var uid, gid string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			uid = f[1]
		} else if len(f) > 1 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	out, err := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--net", "--mount",
		"setpriv", "--reuid="+uid, "--regid="+gid, "--clear-groups", "--", "cat", file).CombinedOutput()
	return string(out), err
}
