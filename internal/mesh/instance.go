package mesh

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/netns"
)

// instance is one replica of a workload: a host, maybe a proxy, the app.
type instance struct {
	name  string // pod-like: <workload>-<i>
	index int    // i
	host  *netns.Host
	spec  *v1alpha1.Workload
	users workloadUsers
	proxy *process // nil when not injected
	app   *process
	ready atomic.Bool
	// cancel stops the readiness prober.
	cancel context.CancelFunc
	mesh   *Mesh
}

// startInstance makes replica i of w: its host, skein-init's rules and the
// proxy (waiting until it holds a certificate, as a native sidecar starts
// first), then the application.
func (m *Mesh) startInstance(ctx context.Context, w *v1alpha1.Workload, i int) (*instance, error) {
	name := instanceName(w, i)
	h, err := m.net.AddHost(ctx, fmt.Sprintf("%s-%d", hostBase(w), i))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	users, err := m.usersFor(w)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	in := &instance{name: name, index: i, host: h, spec: w, users: users, mesh: m}
	if err := m.writeHosts(in); err != nil {
		return nil, err
	}
	home, err := m.homeDir(w, users.app)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: home directory: %w", w.Namespace, name, err)
	}
	if w.Spec.Injected() {
		if err := m.startProxy(ctx, in); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", w.Namespace, name, err)
		}
	}
	app, err := startProcess(name, m.logPath(name), true, m.log, func() *exec.Cmd {
		cmd := h.CommandAs(context.Background(), users.app, w.Spec.Command[0], w.Spec.Command[1:]...)
		cmd.Env = m.appEnv(in, home)
		return cmd
	})
	if err != nil {
		in.stop()
		return nil, fmt.Errorf("%s/%s: %w", w.Namespace, name, err)
	}
	in.app = app
	probeCtx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go in.probe(probeCtx)
	return in, nil
}

// appEnv is the application's environment: the mesh's binaries first on
// PATH, its own home, pod-like variables, then the workload's own env.
func (m *Mesh) appEnv(in *instance, home string) []string {
	env := []string{
		"PATH=" + m.cfg.BinDir + ":" + os.Getenv("PATH"),
		"HOME=" + home,
		"POD_NAME=" + in.name,
		"POD_NAMESPACE=" + in.spec.Namespace,
		"POD_IP=" + in.host.IP.String(),
	}
	for _, e := range in.spec.Spec.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

// startProxy runs skein-init's rules and the sidecar as the workload's
// proxy uid, with a join token proving the workload's identity.
func (m *Mesh) startProxy(ctx context.Context, in *instance) error {
	w := in.spec
	init := in.host.Command(ctx, filepath.Join(m.cfg.BinDir, "skein-init"), "--proxy-uid", fmt.Sprint(in.users.proxy.UID))
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("skein-init: %v: %s", err, out)
	}
	tokenFile, err := m.writeToken(in)
	if err != nil {
		return err
	}
	id := m.identity(w)
	args := []string{
		"-controller-addr", fmt.Sprintf("%s:%d", m.controller.IP, controllerGRPCPort),
		"-controller-id", meshid.Controller(m.joinKey.td).String(),
		"-identity", id,
		"-token-file", tokenFile,
		"-trust-anchors", m.path(identityDir, "ca.crt"),
		"-labels", fmt.Sprintf("namespace=%s,workload=%s,pod=%s,serviceaccount=%s", w.Namespace, w.Name, in.name, w.Spec.ServiceAccount()),
		// A replica leaves its services and loses its application before
		// its proxy is stopped (see instance.stop): nothing is left to
		// accept for.
		"-drain-delay", "0s",
	}
	if ports := inboundPorts(w); ports != "" {
		// Their inbound policies are watched from the proxy's start, so
		// a replica that never served a port still knows its policy
		// while the controller is away.
		args = append(args, "-inbound-ports", ports)
	}
	proxy, err := startProcess(in.name+".proxy", m.logPath(in.name+".proxy"), true, m.log, func() *exec.Cmd {
		return in.host.CommandAs(context.Background(), in.users.proxy, filepath.Join(m.cfg.BinDir, "skein-proxy"), args...)
	})
	if err != nil {
		return err
	}
	in.proxy = proxy
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return waitFor(wctx, "proxy ready", func() error {
		return httpOK(in.host, fmt.Sprintf("http://127.0.0.1:%d/ready", proxyAdminPort))
	})
}

// inboundPorts are w's TCP ports, for the proxy's -inbound-ports (plan
// keeps them within its bound).
func inboundPorts(w *v1alpha1.Workload) string {
	var ports []string
	for _, p := range w.Spec.Ports {
		if p.Protocol == "" || p.Protocol == "TCP" {
			ports = append(ports, fmt.Sprint(p.ContainerPort))
		}
	}
	return strings.Join(ports, ",")
}

// identity is the SPIFFE ID of w's replicas.
func (m *Mesh) identity(w *v1alpha1.Workload) string {
	return (&url.URL{Scheme: "spiffe", Host: m.cfg.TrustDomain, Path: "/ns/" + w.Namespace + "/sa/" + w.Spec.ServiceAccount()}).String()
}

// probe follows the replica's readiness: its probe when it has one, else
// whether its command runs. A change republishes the services.
func (in *instance) probe(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		ok := in.app.running() && in.check(ctx) == nil
		if in.ready.Swap(ok) != ok {
			in.mesh.log.Info("readiness changed", "instance", in.name, "ready", ok)
			in.mesh.republish(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check runs the readiness probe once. An httpGet probe is sent from the
// hub as a kubelet probes from its node: it enters the replica through its
// proxy's inbound redirect and is authorized like any other
// unauthenticated client (its path is one of the instance's ProbePaths),
// so a policy that would deny it shows here as it would on Kubernetes; a
// status from 200 to 399 passes, as for a kubelet. A tcpSocket probe
// connects from inside the replica's host instead, straight to the
// application: through the redirect it would reach the proxy, which
// accepts every connection (a denied one is closed after the accept), so
// it would say nothing about the application.
func (in *instance) check(ctx context.Context) error {
	p := in.spec.Spec.ReadinessProbe
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		port := in.portNumber(p.HTTPGet.Port.String())
		path := p.HTTPGet.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		return probeHTTP(ctx, in.mesh.net.DialFromHub, fmt.Sprintf("http://%s%s", net.JoinHostPort(in.host.IP.String(), port), path))
	case p.TCPSocket != nil:
		c, err := in.host.DialContext(ctx, "tcp", net.JoinHostPort(in.host.IP.String(), in.portNumber(p.TCPSocket.Port.String())))
		if err != nil {
			return err
		}
		return c.Close()
	}
	return nil
}

// probeHTTP is one HTTP GET probe over dial, on a connection of its own.
func probeHTTP(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// portNumber resolves a probe's port, a number or one of the workload's
// port names.
func (in *instance) portNumber(port string) string {
	for _, p := range in.spec.Spec.Ports {
		if p.Name == port {
			return fmt.Sprint(p.ContainerPort)
		}
	}
	return port
}

// stop ends the replica's application, then its proxy, and removes its
// host.
func (in *instance) stop() {
	if in.cancel != nil {
		in.cancel()
	}
	if in.app != nil {
		in.app.stop(10 * time.Second)
	}
	if in.proxy != nil {
		in.proxy.stop(10 * time.Second)
	}
	if err := in.mesh.net.RemoveHost(context.Background(), in.host.Name); err != nil {
		in.mesh.log.Warn("removing host", "instance", in.name, "err", err)
	}
	os.Remove(in.mesh.path(tokensDir, in.host.Name+".token"))
}
