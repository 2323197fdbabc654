package inject

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestManifestsInjectsTemplatesOfEveryWorkloadKind(t *testing.T) {
	in := `apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: "report:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: tools}
spec:
  containers: [{name: sh, image: busybox}]
`
	var out bytes.Buffer
	if err := Manifests(strings.NewReader(in), &out, testConfig()); err != nil {
		t.Fatal(err)
	}
	docs := documentStart.Split(out.String(), -1)
	var cron batchv1.CronJob
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &cron); err != nil {
		t.Fatal(err)
	}
	proxy := cron.Spec.JobTemplate.Spec.Template.Spec.InitContainers[1]
	if got := envOf(proxy)["SKEIN_PROXY_LABELS"]; got != "namespace=$(POD_NAMESPACE),workload=report,pod=$(POD_NAME)" {
		t.Errorf("labels of a CronJob without namespace = %q", got)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &pod); err != nil {
		t.Fatal(err)
	}
	if got := envOf(pod.Spec.InitContainers[1])["SKEIN_PROXY_IDENTITY"]; got != "spiffe://mesh.test/ns/tools/sa/default" {
		t.Errorf("pod identity = %q", got)
	}
}

func TestManifestsLeavesDisabledAndInjectedWorkloadsAsWritten(t *testing.T) {
	in := `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  template:
    metadata:
      annotations: {skein.io/inject: disabled}
    spec:
      containers: [{name: agent, image: "agent:1"}]
`
	var once bytes.Buffer
	if err := Manifests(strings.NewReader(in), &once, testConfig()); err != nil {
		t.Fatal(err)
	}
	if once.String() != in {
		t.Errorf("disabled DaemonSet changed:\n%s", once.String())
	}

	enabled := strings.Replace(in, "disabled", "enabled", 1)
	var first, second bytes.Buffer
	if err := Manifests(strings.NewReader(enabled), &first, testConfig()); err != nil {
		t.Fatal(err)
	}
	if err := Manifests(bytes.NewReader(first.Bytes()), &second, testConfig()); err != nil {
		t.Fatal(err)
	}
	if second.String() != first.String() {
		t.Errorf("injecting twice changed the output:\n%s\nthen\n%s", first.String(), second.String())
	}
}

func TestManifestsErrorNamesDocumentAndAnnotation(t *testing.T) {
	in := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata: {annotations: {skein.io/proxy-cpu-limit: lots}}\n    spec: {containers: [{name: web}]}\n"
	err := Manifests(strings.NewReader(in), &bytes.Buffer{}, testConfig())
	if err == nil || !strings.Contains(err.Error(), "document 2") || !strings.Contains(err.Error(), AnnotationProxyCPULimit) {
		t.Fatalf("err = %v, want one naming document 2 and %s", err, AnnotationProxyCPULimit)
	}
}

// documentStart splits YAML documents at a "---" line (a PEM's
// "-----END CERTIFICATE-----" also ends in "---").
var documentStart = regexp.MustCompile(`(?m)^---\n`)
