package v1alpha1

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestWorkloadDefaults(t *testing.T) {
	var w Workload
	if err := yaml.UnmarshalStrict([]byte("apiVersion: skein.io/v1alpha1\nkind: Workload\nmetadata: {name: web}\nspec: {}\n"), &w); err != nil {
		t.Fatal(err)
	}
	if got := w.Spec.ReplicaCount(); got != 1 {
		t.Errorf("ReplicaCount() = %d, want 1", got)
	}
	if !w.Spec.Injected() {
		t.Error("Injected() = false, want true by default")
	}
	if got := w.Spec.ServiceAccount(); got != "default" {
		t.Errorf("ServiceAccount() = %q, want default", got)
	}
}

func TestWorkloadDeepCopyIsIndependent(t *testing.T) {
	inject := false
	w := &Workload{Spec: WorkloadSpec{Inject: &inject, Addresses: []string{"10.0.0.1"}, ReadinessProbe: &Probe{TCPSocket: &TCPSocketAction{}}}}
	c := w.DeepCopy()
	*c.Spec.Inject = true
	c.Spec.Addresses[0] = "10.0.0.2"
	c.Spec.ReadinessProbe.TCPSocket = nil
	if *w.Spec.Inject || w.Spec.Addresses[0] != "10.0.0.1" || w.Spec.ReadinessProbe.TCPSocket == nil {
		t.Fatalf("modifying the copy changed the original: %+v", w.Spec)
	}
}

func TestSchemeKnowsWorkload(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if !s.Recognizes(GroupVersion.WithKind(WorkloadKind)) {
		t.Fatal("scheme does not recognize skein.io/v1alpha1 Workload")
	}
}

func TestWorkloadValidate(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantField  string // "" means valid
	}{
		{"valid", "metadata: {name: web}\nspec: {ports: [{name: http, containerPort: 8080}], readinessProbe: {httpGet: {path: /, port: http}}, addresses: [10.0.0.1, 'fd00::1'], notReadyAddresses: ['fd00::1']}", ""},
		{"no name", "metadata: {}\nspec: {}", "metadata.name"},
		{"port out of range", "metadata: {name: web}\nspec: {ports: [{containerPort: 70000}]}", "spec.ports[0].containerPort"},
		{"port name twice", "metadata: {name: web}\nspec: {ports: [{name: a, containerPort: 1}, {name: a, containerPort: 2}]}", "spec.ports[1].name"},
		{"probe port name unknown", "metadata: {name: web}\nspec: {ports: [{name: http, containerPort: 80}], readinessProbe: {tcpSocket: {port: htp}}}", "spec.readinessProbe.tcpSocket.port"},
		{"probe without action", "metadata: {name: web}\nspec: {readinessProbe: {}}", "spec.readinessProbe"},
		{"bad address", "metadata: {name: web}\nspec: {addresses: [10.0.0.300]}", "spec.addresses[0]"},
		{"not-ready address of no instance", "metadata: {name: web}\nspec: {addresses: [10.0.0.1], notReadyAddresses: [10.0.0.1, 10.0.0.2]}", "spec.notReadyAddresses[1]"},
		{"negative replicas", "metadata: {name: web}\nspec: {replicas: -1}", "spec.replicas"},
		{"env without name", "metadata: {name: web}\nspec: {env: [{value: x}]}", "spec.env[0].name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Workload
			if err := yaml.UnmarshalStrict([]byte(tt.yaml), &w); err != nil {
				t.Fatal(err)
			}
			err := w.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("Validate() = %v, want an error for field %s", err, tt.wantField)
			}
		})
	}
}
