package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ready reports whether a container runs, has started and passes its
// readiness probe, checked from inside the pod's host. A container without
// one is ready once started; exec and gRPC probes are not run and count as
// passing.
func (w *podWorker) ready(ctx context.Context, p *process) bool {
	if !w.started(ctx, p) {
		return false
	}
	if err := w.probe(ctx, p, p.spec.ReadinessProbe); err != nil {
		w.log.Debug("readiness probe failed", "container", p.name, "err", err)
		return false
	}
	return true
}

// started reports whether a running container has started as a kubelet
// means it: its postStart hook has run and its startupProbe (if any) has
// passed once; until then neither readiness nor the next container of a
// native sidecar goes on.
func (w *podWorker) started(ctx context.Context, p *process) bool {
	if !p.running() || !p.postStartDone.Load() {
		return false
	}
	if p.startupPassed.Load() {
		return true
	}
	if err := w.probe(ctx, p, p.spec.StartupProbe); err != nil {
		w.log.Debug("startup probe failed", "container", p.name, "err", err)
		return false
	}
	p.startupPassed.Store(true)
	return true
}

// startupWindow is how long a startupProbe may fail before the container
// counts as failed: failureThreshold periods (defaults 3 and 10 s) after
// its initial delay. Without a probe, a container starts at once.
func startupWindow(probe *corev1.Probe) time.Duration {
	if probe == nil {
		return 0
	}
	period, threshold := probe.PeriodSeconds, probe.FailureThreshold
	if period <= 0 {
		period = 10
	}
	if threshold <= 0 {
		threshold = 3
	}
	return time.Duration(probe.InitialDelaySeconds+period*threshold) * time.Second
}

// probe runs one check of probe (nil passes) against a container.
func (w *podWorker) probe(ctx context.Context, p *process, probe *corev1.Probe) error {
	if probe == nil {
		return nil
	}
	return w.runHandler(ctx, p, probe.ProbeHandler, probeTimeout(probe))
}

func probeTimeout(probe *corev1.Probe) time.Duration {
	if probe.TimeoutSeconds > 0 {
		return time.Duration(probe.TimeoutSeconds) * time.Second
	}
	return time.Second
}

// runHandler runs an httpGet or tcpSocket check within timeout; exec and
// gRPC checks are not run and pass.
func (w *podWorker) runHandler(ctx context.Context, p *process, h corev1.ProbeHandler, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.HTTPGet != nil:
		return w.probeHTTP(ctx, p.spec, h.HTTPGet)
	case h.TCPSocket != nil:
		return w.probeTCP(ctx, p.spec, h.TCPSocket)
	}
	return nil
}

func (w *podWorker) probeHTTP(ctx context.Context, c corev1.Container, get *corev1.HTTPGetAction) error {
	addr, err := w.probeAddr(c, get.Host, get.Port)
	if err != nil {
		return err
	}
	scheme := "http"
	if get.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+get.Path, nil)
	if err != nil {
		return err
	}
	for _, h := range get.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext:       w.host.DialContext,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as a kubelet does
		DisableKeepAlives: true,
	}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	return nil
}

func (w *podWorker) probeTCP(ctx context.Context, c corev1.Container, tcp *corev1.TCPSocketAction) error {
	addr, err := w.probeAddr(c, tcp.Host, tcp.Port)
	if err != nil {
		return err
	}
	conn, err := w.host.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// probeAddr resolves a probe's host (default: the pod's IP) and port,
// which may name one of the container's ports.
func (w *podWorker) probeAddr(c corev1.Container, host string, port intstr.IntOrString) (string, error) {
	if host == "" {
		host = w.host.IP.String()
	}
	if port.Type == intstr.Int {
		return net.JoinHostPort(host, strconv.Itoa(port.IntValue())), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return net.JoinHostPort(host, strconv.Itoa(int(p.ContainerPort))), nil
		}
	}
	return "", fmt.Errorf("container %s has no port named %q", c.Name, port.StrVal)
}
