package source

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
)

func TestService(t *testing.T) {
	in := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web", Annotations: map[string]string{
			"skein.io/opaque-ports": "3306,25", "skein.io/retry-http": "5xx", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
		Spec: corev1.ServiceSpec{
			ClusterIPs: []string{"10.96.0.10", "fd00::10"},
			Selector:   map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "grpc", Port: 9090, TargetPort: intstr.FromString("grpc")},
				{Name: "same", Port: 25},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			},
		},
	}
	want := model.Service{
		Namespace: "demo", Name: "web",
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00::10")},
		Selector:   map[string]string{"app": "web"},
		Ports: []model.ServicePort{
			{Name: "http", Port: 80, TargetPort: 8080},
			{Name: "grpc", Port: 9090, TargetPortName: "grpc"},
			{Name: "same", Port: 25},
		},
		OpaquePorts: []uint16{25, 3306},
		// The skein.io/ annotations only, for the policy compiler.
		Annotations: map[string]string{"skein.io/opaque-ports": "3306,25", "skein.io/retry-http": "5xx"},
	}
	got, err := Service(in)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Service() = %+v, %v\nwant %+v", got, err, want)
	}
}

func TestServiceErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*corev1.Service)
		wantField string
	}{
		{"bad cluster IP", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.300" }, "spec.clusterIP"},
		{"bad port", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }, "spec.ports[0].port"},
		{"bad target port", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(70000) }, "spec.ports[0].targetPort"},
		{"bad opaque ports", func(s *corev1.Service) { s.Annotations = map[string]string{"skein.io/opaque-ports": "mysql"} }, "metadata.annotations[skein.io/opaque-ports]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
			tt.edit(s)
			_, err := Service(s)
			var fe *v1alpha1.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("Service() error = %v, want one for %s", err, tt.wantField)
			}
		})
	}
}

func TestWorkloadInstances(t *testing.T) {
	noInject := false
	w := &v1alpha1.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: v1alpha1.WorkloadSpec{
			Ports:             []v1alpha1.WorkloadPort{{Name: "http", ContainerPort: 8080}},
			Addresses:         []string{"10.0.0.1", "10.0.0.2"},
			NotReadyAddresses: []string{"10.0.0.1"},
			Inject:            &noInject,
		},
	}
	got, err := WorkloadInstances(w)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Name != "web-1" || got[1].IP != netip.MustParseAddr("10.0.0.2") ||
		got[1].Ports["http"] != 8080 || got[1].ServiceAccount != "default" || got[1].Meshed || !got[1].Ready || got[1].Workload != "web" || got[0].Ready {
		t.Fatalf("WorkloadInstances() = %+v", got)
	}
}
