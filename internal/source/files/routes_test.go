package files

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/model"
)

const routeServices = `
apiVersion: v1
kind: Service
metadata:
  name: web-v1
  namespace: demo
  annotations: {skein.io/retry-http: 5xx, skein.io/timeout-request: 2s}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: demo}
spec: {ports: [{port: 80}]}
`

const splitRoute = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: split
  namespace: demo
  annotations: {skein.io/retry-limit: "3"}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs:
    - {name: web-v1, port: 80, weight: 90}
    - {name: web-v2, port: 80, weight: 10}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - matches: [{method: {service: emoji.Emoji, method: List}}]
    backendRefs: [{name: web-v2, port: 80}]
`

func TestLoadRoutesAndServiceAnnotations(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "web.yaml", webManifests+routeServices)
	writeFile(t, dir, "routes.yaml", splitRoute)
	snap, _, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.HTTPRoutes) != 1 || len(snap.GRPCRoutes) != 1 {
		t.Fatalf("got %d HTTPRoutes, %d GRPCRoutes; want 1, 1", len(snap.HTTPRoutes), len(snap.GRPCRoutes))
	}
	hr := snap.HTTPRoutes[0]
	if hr.Namespace != "demo" || hr.Name != "split" || *hr.Spec.Rules[0].BackendRefs[1].Weight != 10 || hr.Annotations["skein.io/retry-limit"] != "3" {
		t.Errorf("HTTPRoute = %+v", hr)
	}
	if gr := snap.GRPCRoutes[0]; *gr.Spec.Rules[0].Matches[0].Method.Method != "List" {
		t.Errorf("GRPCRoute = %+v", gr)
	}
	for _, s := range snap.Services {
		if s.Name == "web-v1" && (s.Annotations["skein.io/retry-http"] != "5xx" || s.Annotations["skein.io/timeout-request"] != "2s") {
			t.Errorf("web-v1 annotations = %v", s.Annotations)
		}
	}
	m, err := Read(dir)
	if err != nil || len(m.HTTPRoutes) != 1 || len(m.GRPCRoutes) != 1 || len(m.Workloads) != 1 {
		t.Errorf("Read: %+v, %v", m, err)
	}
}

func TestLoadRejectsBadRoutesNamingFileObjectAndField(t *testing.T) {
	const head = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: split, namespace: demo}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: web}]\n"
	tests := []struct {
		name, manifest, field, problem string
	}{
		{"unknown field", head + "  rules: [{backendRefs: [{name: web-v1, port: 80, wieght: 1}]}]\n", "spec.rules[0].backendRefs[0].wieght", "unknown field"},
		{"unknown backend", head + "  rules: [{backendRefs: [{name: web-v1, port: 80}, {name: nope, port: 80}]}]\n", "spec.rules[0].backendRefs[1]", "Service demo/nope not found"},
		{"bad regex", head + "  rules: [{matches: [{path: {type: RegularExpression, value: '/a('}}]}]\n", "spec.rules[0].matches[0].path.value", "bad regular expression"},
		{"weights all zero", head + "  rules: [{backendRefs: [{name: web-v1, port: 80, weight: 0}]}]\n", "spec.rules[0].backendRefs", "every backendRef has weight 0"},
		{"bad route annotation", strings.Replace(head, "namespace: demo}", "namespace: demo, annotations: {skein.io/retry-limit: x}}", 1) + "  rules: [{}]\n",
			"metadata.annotations[skein.io/retry-limit]", `"x" is not a number`},
		{"bad Service annotation", "apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: demo, annotations: {skein.io/breaker-window: soon}}\nspec: {ports: [{port: 80}]}\n",
			"metadata.annotations[skein.io/breaker-window]", `"soon" is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "web.yaml", webManifests+routeServices)
			writeFile(t, dir, "bad.yaml", tt.manifest)
			_, _, err := Load(dir)
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("Load() = %v, want a *ManifestError", err)
			}
			if filepath.Base(me.File) != "bad.yaml" || me.Field != tt.field || !strings.Contains(me.Err.Error(), tt.problem) {
				t.Errorf("error %q: file %s, field %q; want bad.yaml, %q, %q", err, filepath.Base(me.File), me.Field, tt.field, tt.problem)
			}
			if want := "bad.yaml: document 1 (" + me.Kind + " demo/"; !strings.Contains(err.Error(), want) {
				t.Errorf("message %q lacks %q", err, want)
			}
		})
	}
}

// TestSourceKeepsTheLastGoodRoutes: an edit that breaks a route is
// rejected whole, and the model keeps serving the route as it was.
func TestSourceKeepsTheLastGoodRoutes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "web.yaml", webManifests+routeServices)
	writeFile(t, dir, "routes.yaml", splitRoute)
	_, m, logs := startSource(t, dir)
	weight := func() int32 {
		in := m.PolicyInputs()
		if len(in.HTTPRoutes) != 1 {
			t.Fatalf("model holds %d HTTPRoutes", len(in.HTTPRoutes))
		}
		return *in.HTTPRoutes[0].Spec.Rules[0].BackendRefs[0].Weight
	}
	if w := weight(); w != 90 {
		t.Fatalf("weight %d, want 90", w)
	}

	writeFile(t, dir, "routes.yaml", strings.Replace(strings.Replace(splitRoute, "weight: 90", "weight: 0", 1), "weight: 10", "weight: 0", 1))
	attrs := waitLog(t, logs, "keeping the last good state")
	for _, want := range []string{"routes.yaml", "HTTPRoute demo/split", "spec.rules[0].backendRefs"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("logged error %q does not mention %q", attrs, want)
		}
	}
	if w := weight(); w != 90 {
		t.Errorf("after an invalid edit: weight %d, want the last good 90", w)
	}

	changed := make(chan model.PolicyInputs, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.WatchPolicyInputs(ctx, func(in model.PolicyInputs) { changed <- in })
	<-changed
	writeFile(t, dir, "routes.yaml", strings.Replace(splitRoute, "weight: 90", "weight: 50", 1))
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the fixed route did not reach the model")
	}
	if w := weight(); w != 50 {
		t.Errorf("after the fix: weight %d, want 50", w)
	}
}
