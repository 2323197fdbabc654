package files

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const webManifests = `
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  annotations:
    skein.io/opaque-ports: "3306"
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
# the workload behind it
apiVersion: skein.io/v1alpha1
kind: Workload
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  serviceAccountName: web
  command: [web, --port=8080]
  ports:
  - {name: http, containerPort: 8080}
  readinessProbe: {httpGet: {path: /ready, port: http}}
  addresses: [10.0.0.1, 10.0.0.2]
---
`

// writeFile puts a whole file in place at once, as editors and `skein up`
// do (written aside, renamed in): written in place, a reload that came
// between the truncation and the write would see the file empty.
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp") // dotfiles are not read
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "web.yaml", webManifests)
	writeFile(t, dir, "vm.yml", "apiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: vm}\nspec: {inject: false, addresses: ['192.168.1.5']}\n")
	writeFile(t, dir, "notes.txt", "not a manifest")
	writeFile(t, dir, ".web.yaml.swp", "\x00garbage")

	snap, ignored, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ignored) != 0 {
		t.Errorf("ignored %v, want nothing", ignored)
	}
	if len(snap.Services) != 1 || len(snap.Instances) != 3 {
		t.Fatalf("got %d services, %d instances; want 1, 3", len(snap.Services), len(snap.Instances))
	}
	svc := snap.Services[0]
	if svc.Namespace != "demo" || svc.ClusterIPs[0] != netip.MustParseAddr("10.96.0.10") || svc.Ports[0].TargetPortName != "http" || svc.OpaquePorts[0] != 3306 {
		t.Errorf("service = %+v", svc)
	}
	byName := map[string]int{}
	for i, in := range snap.Instances {
		byName[in.Namespace+"/"+in.Name] = i
	}
	vm := snap.Instances[byName["default/vm-0"]]
	if vm.Meshed || vm.ServiceAccount != "default" || vm.IP != netip.MustParseAddr("192.168.1.5") {
		t.Errorf("vm instance = %+v", vm)
	}
	web1 := snap.Instances[byName["demo/web-1"]]
	if !web1.Meshed || web1.ServiceAccount != "web" || web1.Ports["http"] != 8080 || web1.Labels["app"] != "web" {
		t.Errorf("web-1 instance = %+v", web1)
	}
}

func TestLoadErrorNamesFileObjectAndField(t *testing.T) {
	const workload = "apiVersion: skein.io/v1alpha1\nkind: Workload\n"
	const service = "apiVersion: v1\nkind: Service\n"
	tests := []struct {
		name      string
		manifest  string
		wantDoc   int
		wantObj   string // "Kind ns/name", or "" when unknown
		wantField string
	}{
		{"a kind that runs something", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n", 1, "", "kind"},
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n", 1, "", "kind"},
		{"unknown field in an ignored kind", "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, lables: {a: b}}\n", 1, "Namespace /demo", "metadata.lables"},
		{"ignored kind without a name", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: demo}\n", 1, "ServiceAccount demo/", "metadata.name"},
		{"unknown apiVersion", "apiVersion: skein.io/v2\nkind: Workload\nmetadata: {name: web}\n", 1, "", "kind"},
		{"unknown field", workload + "metadata: {name: web}\nspec: {ports: [{nmae: http, containerPort: 80}]}\n", 1, "Workload default/web", "spec.ports[0].nmae"},
		{"field in the wrong case", service + "metadata: {name: web}\nspec: {ports: [{port: 80, targetport: 80}]}\n", 1, "Service default/web", "spec.ports[0].targetport"},
		{"wrong type", workload + "metadata: {name: web}\nspec: {ports: [{containerPort: http}]}\n", 1, "Workload default/web", "spec.ports.containerPort"},
		{"missing name", "---\n" + workload + "metadata: {namespace: demo}\nspec: {}\n", 2, "Workload demo/", "metadata.name"},
		{"duplicate name", workload + "metadata: {name: web}\n---\n" + workload + "metadata: {name: web, namespace: default}\n", 2, "Workload default/web", "metadata.name"},
		{"bad address", workload + "metadata: {name: web}\nspec: {addresses: [10.0.0.1, 10.0.0.256]}\n", 1, "Workload default/web", "spec.addresses[1]"},
		{"bad cluster IP", service + "metadata: {name: web}\nspec: {clusterIP: nope, ports: [{port: 80}]}\n", 1, "Service default/web", "spec.clusterIP"},
		{"bad opaque ports", service + "metadata: {name: web, annotations: {skein.io/opaque-ports: mysql}}\nspec: {ports: [{port: 80}]}\n", 1, "Service default/web", "metadata.annotations[skein.io/opaque-ports]"},
		{"target port name not found", workload + "metadata: {name: web, labels: {app: web}}\nspec: {ports: [{name: http, containerPort: 80}]}\n---\n" +
			service + "metadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80, targetPort: htp}]}\n", 2, "Service default/web", "spec.ports[0].targetPort"},
		{"duplicate key", workload + "metadata: {name: web}\nmetadata: {name: other}\n", 1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "good.yaml", webManifests)
			writeFile(t, dir, "bad.yaml", tt.manifest)
			_, _, err := Load(dir)
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("Load() = %v, want a *ManifestError", err)
			}
			obj := ""
			if me.Kind != "" || me.Name != "" {
				obj = me.Kind + " " + me.Namespace + "/" + me.Name
			}
			if filepath.Base(me.File) != "bad.yaml" || me.Document != tt.wantDoc || obj != tt.wantObj || me.Field != tt.wantField {
				t.Fatalf("error %q: file %s, document %d, object %q, field %q; want bad.yaml, %d, %q, %q",
					err, filepath.Base(me.File), me.Document, obj, me.Field, tt.wantDoc, tt.wantObj, tt.wantField)
			}
			if !strings.Contains(err.Error(), "bad.yaml") {
				t.Errorf("message %q does not name the file", err)
			}
		})
	}
}

func TestLoadMissingDirectory(t *testing.T) {
	if _, _, err := Load(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("Load of a missing directory succeeded")
	}
}

// TestLoadLeavesOutNamespacesAndServiceAccounts: a set written for
// Kubernetes, each file starting with the same Namespace, loads; the
// Namespace is read once (its skein.io/ annotations) and the
// ServiceAccount documents are left out and listed.
func TestLoadLeavesOutNamespacesAndServiceAccounts(t *testing.T) {
	dir := t.TempDir()
	const ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, labels: {skein.io/inject: enabled}}\n---\n"
	writeFile(t, dir, "a.yaml", ns+webManifests)
	writeFile(t, dir, "b.yaml", ns+"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: demo}\n")
	snap, ignored, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Services) != 1 || len(snap.Instances) != 2 || len(snap.Namespaces) != 1 || snap.Namespaces[0].Name != "demo" {
		t.Errorf("got %d services, %d instances, namespaces %+v; want 1, 2, demo", len(snap.Services), len(snap.Instances), snap.Namespaces)
	}
	var got []string
	for _, i := range ignored {
		got = append(got, strings.TrimPrefix(i.String(), dir+"/"))
	}
	want := []string{
		"b.yaml: document 2 (v1 ServiceAccount demo/web) ignored: a Workload's identity comes from its spec.serviceAccountName; the object itself is not needed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ignored:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadRefusesKindsThatRunSomethingAndSaysToUseAWorkload(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\nspec: {}\n")
	_, _, err := Load(dir)
	want := filepath.Join(dir, "deploy.yaml") + ": document 1: kind: apps/v1 Deployment is not run here: describe the process as a skein.io/v1alpha1 Workload (spec.command, spec.replicas)"
	if err == nil || err.Error() != want {
		t.Errorf("Load = %v\nwant %s", err, want)
	}
}
