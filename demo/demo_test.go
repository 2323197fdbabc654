package demo_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/demo"
	"github.com/skeinmesh/skein/internal/source/files"
)

// TestManifestsLoad checks the embedded manifests with the local mesh's own
// loader and names what they define.
func TestManifestsLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, demo.ManifestFile), demo.Manifests, 0o644); err != nil {
		t.Fatal(err)
	}
	snap, ignored, err := files.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ignored) != 0 {
		t.Errorf("the demo's manifests have documents the mesh ignores: %+v", ignored)
	}
	var services []string
	for _, s := range snap.Services {
		if s.Namespace != demo.Namespace || len(s.Ports) != 1 || s.Ports[0].Port != 8080 {
			t.Errorf("service %s/%s: %+v, want namespace demo and one port 8080", s.Namespace, s.Name, s)
		}
		services = append(services, s.Name)
	}
	slices.Sort(services)
	if want := []string{"emoji", "voting", "web"}; !slices.Equal(services, want) {
		t.Errorf("services = %v, want %v", services, want)
	}
}

// TestManifestsWorkloads checks each Workload's replicas, identity, command
// and ports. (files.Load makes instances from spec.addresses only, which the
// local mesh fills in, so the Workloads are decoded here.)
func TestManifestsWorkloads(t *testing.T) {
	want := map[string]struct {
		replicas   int32
		subcommand string
		port       int32 // 0: none
	}{
		"web":      {1, "web", 8080},
		"emoji":    {3, "emoji", 8080},
		"voting":   {2, "voting", 8080},
		"vote-bot": {1, "vote-bot", 0},
	}
	got := map[string]bool{}
	for _, doc := range strings.Split(string(demo.Manifests), "\n---\n") {
		var w v1alpha1.Workload
		if err := yaml.Unmarshal([]byte(doc), &w); err != nil {
			t.Fatal(err)
		}
		if w.Kind != v1alpha1.WorkloadKind {
			continue
		}
		got[w.Name] = true
		wl, ok := want[w.Name]
		if !ok {
			t.Errorf("unexpected workload %s", w.Name)
			continue
		}
		s := w.Spec
		if w.Namespace != demo.Namespace || w.Labels["app"] != w.Name || s.ServiceAccount() != w.Name || s.ReplicaCount() != wl.replicas || !s.Injected() {
			t.Errorf("workload %s: namespace %q, labels %v, service account %q, %d replicas, injected %v; want namespace demo, label and service account %s, %d replicas, injected",
				w.Name, w.Namespace, w.Labels, s.ServiceAccount(), s.ReplicaCount(), s.Injected(), w.Name, wl.replicas)
		}
		if len(s.Command) < 2 || s.Command[0] != "skein-demo" || s.Command[1] != wl.subcommand {
			t.Errorf("workload %s: command %q, want skein-demo %s ...", w.Name, s.Command, wl.subcommand)
		}
		if wl.port != 0 && (len(s.Ports) != 1 || s.Ports[0].ContainerPort != wl.port || s.ReadinessProbe == nil) {
			t.Errorf("workload %s: ports %+v, probe %+v; want port %d and a readiness probe", w.Name, s.Ports, s.ReadinessProbe, wl.port)
		}
	}
	if len(got) != len(want) {
		t.Errorf("workloads = %v, want %d of them", got, len(want))
	}
}
