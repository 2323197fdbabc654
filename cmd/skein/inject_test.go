package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

func TestInjectCommandInjectsDeploymentAndPassesConfigMapThrough(t *testing.T) {
	configMap := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings # kept as written\ndata:\n  mode: fast\n"
	in := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers: [{name: web, image: "web:1"}]
---
` + configMap
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader(in))
	cmd.SetOut(&out)
	anchors := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(anchors, []byte("-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"), 0o644)
	cmd.SetArgs([]string{"inject", "--proxy-image", "proxy:v9", "--trust-domain", "mesh.test", "--trust-anchors", anchors})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	docs := documentStart.Split(out.String(), -1)
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2:\n%s", len(docs), out.String())
	}
	if docs[1] != configMap {
		t.Errorf("ConfigMap changed:\n%s", docs[1])
	}
	if strings.Contains(docs[0], "creationTimestamp") {
		t.Errorf("output has creationTimestamp noise:\n%s", docs[0])
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &d); err != nil {
		t.Fatalf("output is not a valid Deployment: %v\n%s", err, docs[0])
	}
	spec := d.Spec.Template.Spec
	if len(spec.InitContainers) != 2 || spec.InitContainers[1].Name != "skein-proxy" || spec.InitContainers[1].Image != "proxy:v9" {
		t.Fatalf("init containers = %+v", spec.InitContainers)
	}
	if d.Spec.Template.Annotations["skein.io/injected"] != "true" {
		t.Error("template not annotated skein.io/injected")
	}
	if !strings.Contains(docs[0], "spiffe://mesh.test/ns/demo/sa/web") {
		t.Errorf("no identity from --trust-domain in:\n%s", docs[0])
	}
}

// documentStart splits YAML documents at a "---" line (a PEM's
// "-----END CERTIFICATE-----" also ends in "---").
var documentStart = regexp.MustCompile(`(?m)^---\n`)
