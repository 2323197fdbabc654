package kubelet

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/netns"
)

// TestCommandMapsTheContainerSpec checks how a container's spec becomes a
// process: args after command[0], env from fieldRefs and $(VAR)
// references, volumes bind-mounted by a shell that then execs the command,
// user and capabilities.
func TestCommandMapsTheContainerSpec(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1"}}
	tokenDir := t.TempDir()
	node := &kubelet{
		cfg: Config{
			TokenDir: tokenDir,
			Images:   map[string]string{"skein/proxy": "/bin/skein-proxy"},
			Log:      slog.Default(),
		},
		ctx:         context.Background(),
		mountPoints: &mountPoints{log: slog.Default()},
	}
	w := newPodWorker(node, pod)
	w.host = &netns.Host{Name: "h", Namespace: "skein-x-h", IP: netip.MustParseAddr("198.18.0.7")}
	w.apiServerEnv = []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "198.19.128.1"}}
	// The volumes' directories exist, and the mount point of the nested
	// mount is made inside the outer volume, not on the machine.
	for _, v := range []string{"run", "identity"} {
		if err := os.MkdirAll(filepath.Join(tokenDir, "u1", v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid := int64(2102)
	c := corev1.Container{
		Name:    "proxy",
		Image:   "skein/proxy",
		Command: []string{"skein-proxy", "run"},
		Args:    []string{"--token=$(TOKEN)", "--id=$(NAME).$(NS)", "--keep=$(UNDEFINED)", "--literal=$$(NAME)"},
		Env: []corev1.EnvVar{
			{Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "TOKEN", Value: "/run/id/token"},
			{Name: "LABELS", Value: "pod=$(NAME),api=$(KUBERNETES_SERVICE_HOST)"},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "identity", MountPath: "/run/id/", ReadOnly: true},
			{Name: "run", MountPath: "/run"},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:    &uid,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "CAP_NET_RAW"}},
		},
	}

	env, err := w.env(c)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := []string{
		"KUBERNETES_SERVICE_HOST=198.19.128.1",
		"NAME=web-1", "NS=shop", "IP=198.18.0.7", "TOKEN=/run/id/token",
		"LABELS=pod=web-1,api=198.19.128.1",
	}
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
	wantTail := []string{"--", "/bin/skein-proxy", "run", "--token=/run/id/token", "--id=web-1.shop", "--keep=$(UNDEFINED)", "--literal=$(NAME)"}
	if got := cmd.Args[len(cmd.Args)-len(wantTail):]; !slices.Equal(got, wantTail) {
		t.Errorf("command ends with %q, want %q", got, wantTail)
	}
	script := cmd.Args[slices.Index(cmd.Args, "-c")+1]
	wantScript := "set -e\n" +
		`mount --bind "${2}" "${1}"` + "\n" +
		`mount --bind "${4}" "${3}"` + "\n" +
		`mount -o remount,bind,ro "${3}"` + "\n" +
		"shift 4\nexec \"$@\"\n"
	if script != wantScript {
		t.Errorf("mount script:\n%s\nwant:\n%s", script, wantScript)
	}
	mountArgs := cmd.Args[slices.Index(cmd.Args, "-c")+3:][:4]
	wantMounts := []string{"/run", filepath.Join(tokenDir, "u1", "run"), "/run/id", filepath.Join(tokenDir, "u1", "identity")}
	if !slices.Equal(mountArgs, wantMounts) {
		t.Errorf("mounts = %q, want %q", mountArgs, wantMounts)
	}
	if _, err := os.Stat(filepath.Join(tokenDir, "u1", "run", "id")); err != nil {
		t.Errorf("the nested mount point was not made inside the outer volume: %v", err)
	}
	if len(node.mountPoints.created) != 0 {
		t.Errorf("mount points made on the machine: %q, want none (/run exists)", node.mountPoints.created)
	}

	c.Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}}
	if _, err := w.env(c); err == nil {
		t.Error("env with an unsupported fieldRef: no error")
	}
}
