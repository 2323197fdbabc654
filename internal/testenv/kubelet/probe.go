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

// ready reports whether a container runs and passes its readiness probe,
// checked from inside the pod's host. A container without one is ready
// once started; exec and gRPC probes are not run and count as passing.
func (w *podWorker) ready(ctx context.Context, p *process) bool {
	if !p.running() {
		return false
	}
	probe := p.spec.ReadinessProbe
	if probe == nil {
		return true
	}
	timeout := time.Second
	if probe.TimeoutSeconds > 0 {
		timeout = time.Duration(probe.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch {
	case probe.HTTPGet != nil:
		err = w.probeHTTP(ctx, p.spec, probe.HTTPGet)
	case probe.TCPSocket != nil:
		err = w.probeTCP(ctx, p.spec, probe.TCPSocket)
	}
	if err != nil {
		w.log.Debug("readiness probe failed", "container", p.name, "err", err)
	}
	return err == nil
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
