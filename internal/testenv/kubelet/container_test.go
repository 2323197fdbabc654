package kubelet

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/netns"
)

// TestCommandMapsTheContainerSpec checks how a container's spec becomes a
// process: args after command[0], env from fieldRefs, mount paths rewritten
// to the pod's volume directory, user and capabilities.
func TestCommandMapsTheContainerSpec(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1"}}
	w := newPodWorker(context.Background(), Config{
		TokenDir: "/tmp/tokens",
		Images:   map[string]string{"skein/proxy": "/bin/skein-proxy"},
		Log:      slog.Default(),
	}, pod)
	w.host = &netns.Host{Name: "h", Namespace: "skein-x-h", IP: netip.MustParseAddr("198.18.0.7")}
	uid := int64(2102)
	c := corev1.Container{
		Name:    "proxy",
		Image:   "skein/proxy",
		Command: []string{"skein-proxy", "run"},
		Args:    []string{"--token=/var/run/id/token", "--other=/var/run/identity"},
		Env: []corev1.EnvVar{
			{Name: "TOKEN", Value: "/var/run/id/token"},
			{Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "identity", MountPath: "/var/run/id"}},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:    &uid,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "CAP_NET_RAW"}},
		},
	}

	rewrite := w.mountRewriter(c)
	for in, want := range map[string]string{
		"/var/run/id/token":     "/tmp/tokens/u1/identity/token",
		"/var/run/id":           "/tmp/tokens/u1/identity",
		"/var/run/identity":     "/var/run/identity", // not under the mount
		"--token=/var/run/id/x": "--token=/tmp/tokens/u1/identity/x",
		"x/var/run/id/token":    "x/var/run/id/token", // only prefixes
	} {
		if got := rewrite(in); got != want {
			t.Errorf("rewrite(%q) = %q, want %q", in, got, want)
		}
	}

	env, err := w.env(c, rewrite)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{"TOKEN=/tmp/tokens/u1/identity/token", "NAME=web-1", "NS=shop", "IP=198.18.0.7"}
	if !slices.Equal(env, wantEnv) {
		t.Errorf("env = %q, want %q", env, wantEnv)
	}

	u, asRoot := w.user(c)
	if asRoot || u.UID != 2102 || !slices.Equal(u.AmbientCaps, []string{"net_admin", "net_raw"}) {
		t.Errorf("user = %+v (root %v), want uid 2102 with net_admin, net_raw", u, asRoot)
	}

	cmd, err := w.command(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	wantTail := []string{"/bin/skein-proxy", "run", "--token=/tmp/tokens/u1/identity/token", "--other=/var/run/identity"}
	if got := cmd.Args[len(cmd.Args)-len(wantTail):]; !slices.Equal(got, wantTail) {
		t.Errorf("command ends with %q, want %q", got, wantTail)
	}

	c.Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	if _, err := w.env(c, rewrite); err == nil {
		t.Error("env with an unsupported fieldRef: no error")
	}
}
