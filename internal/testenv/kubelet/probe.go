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

// The probes run as a kubelet runs them (pkg/kubelet/prober): from the
// node, not from inside the pod (see probeHTTP), each every periodSeconds
// after initialDelaySeconds, a result changing only after
// failureThreshold failures (default 3) or successThreshold successes
// (default 1) in a row. The startupProbe runs first; readiness and
// liveness only once it has passed. Two differences, for quick tests: an
// unset periodSeconds means statusInterval (a kubelet's default is 10 s),
// and a container whose liveness or startup probe fails is killed and, as
// restarts are not supported, stays terminated.

// probeState is one probe of one container; only the pod's worker
// goroutine touches it.
type probeState struct {
	lastRun             time.Time
	failures, successes int  // in a row
	ok                  bool // the current result
}

// due reports whether probe should run now: past its initial delay and
// at least a period after its last run.
func (s *probeState) due(probe *corev1.Probe, startedAt time.Time) bool {
	now := time.Now()
	if now.Before(startedAt.Add(time.Duration(probe.InitialDelaySeconds) * time.Second)) {
		return false
	}
	return s.lastRun.IsZero() || now.Sub(s.lastRun) >= probePeriod(probe)
}

// record counts one result and returns the probe's current result.
func (s *probeState) record(probe *corev1.Probe, err error) bool {
	s.lastRun = time.Now()
	if err != nil {
		s.successes = 0
		s.failures++
		if s.failures >= threshold(probe.FailureThreshold, 3) {
			s.ok = false
		}
		return s.ok
	}
	s.failures = 0
	s.successes++
	if s.successes >= threshold(probe.SuccessThreshold, 1) {
		s.ok = true
	}
	return s.ok
}

func threshold(n, def int32) int {
	if n <= 0 {
		return int(def)
	}
	return int(n)
}

func probePeriod(probe *corev1.Probe) time.Duration {
	if probe.PeriodSeconds > 0 {
		return time.Duration(probe.PeriodSeconds) * time.Second
	}
	return statusInterval
}

// ready reports whether a container runs, has started, is alive and
// passes its readiness probe. A container without one is ready once
// started; exec and gRPC probes are not run and count as passing.
func (w *podWorker) ready(ctx context.Context, p *process) bool {
	if !w.started(ctx, p) {
		return false
	}
	if lp := p.spec.LivenessProbe; lp != nil && p.liveness.due(lp, p.startedAt) {
		err := w.probe(ctx, p, lp)
		if !p.liveness.record(lp, err) && p.liveness.failures >= threshold(lp.FailureThreshold, 3) {
			w.kill(p, fmt.Sprintf("liveness probe failed %d times: %v", p.liveness.failures, err))
			return false
		}
	}
	rp := p.spec.ReadinessProbe
	if rp == nil {
		return true
	}
	if p.readiness.due(rp, p.startedAt) {
		err := w.probe(ctx, p, rp)
		if !p.readiness.record(rp, err) {
			w.log.Debug("readiness probe failed", "container", p.name, "in_a_row", p.readiness.failures, "err", err)
		}
	}
	return p.readiness.ok
}

// started reports whether a running container has started as a kubelet
// means it: its postStart hook has run and its startupProbe (if any) has
// passed once; until then neither readiness nor the next container of a
// native sidecar goes on. A startupProbe that fails failureThreshold
// times in a row kills the container.
func (w *podWorker) started(ctx context.Context, p *process) bool {
	if !p.running() || !p.postStartDone.Load() {
		return false
	}
	sp := p.spec.StartupProbe
	if sp == nil || p.startupPassed.Load() {
		return true
	}
	if !p.startup.due(sp, p.startedAt) {
		return false
	}
	err := w.probe(ctx, p, sp)
	if p.startup.record(sp, err) {
		p.startupPassed.Store(true)
		p.liveness.lastRun, p.readiness.lastRun = time.Time{}, time.Time{}
		return true
	}
	w.log.Debug("startup probe failed", "container", p.name, "in_a_row", p.startup.failures, "err", err)
	if p.startup.failures >= threshold(sp.FailureThreshold, 3) {
		p.startupFailed.Store(true)
		w.kill(p, fmt.Sprintf("startup probe failed %d times: %v", p.startup.failures, err))
	}
	return false
}

// kill ends a container a probe gave up on; it is not restarted.
func (w *podWorker) kill(p *process, why string) {
	w.log.Warn("killing container", "container", p.name, "reason", why)
	if err := p.cmd.Process.Kill(); err != nil && p.running() {
		w.log.Warn("killing container", "container", p.name, "err", err)
	}
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

// probeHTTP sends an httpGet probe (or postStart hook) as a kubelet does:
// from the node (the network's hub, the Node's address), unauthenticated,
// to the pod's IP, so that it enters the pod like any other client, through
// a meshed pod's inbound redirect and its proxy's policy. Probing from
// inside the pod's own network namespace would not: traffic to the pod's
// own address stays on lo, which the redirect leaves alone. Statuses 200
// to 399 pass.
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
		DialContext:       w.cfg.Network.DialFromHub,
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

// probeTCP connects from the node, as probeHTTP does; through a meshed
// pod's redirect that reaches the proxy, which accepts, as on a real node.
func (w *podWorker) probeTCP(ctx context.Context, c corev1.Container, tcp *corev1.TCPSocketAction) error {
	addr, err := w.probeAddr(c, tcp.Host, tcp.Port)
	if err != nil {
		return err
	}
	conn, err := w.cfg.Network.DialFromHub(ctx, "tcp", addr)
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
