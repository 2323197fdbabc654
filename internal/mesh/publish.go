package mesh

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/atomicfile"
	"github.com/skeinmesh/skein/internal/netns"
)

// republish is publish for background callers: a failure is logged.
func (m *Mesh) republish(ctx context.Context) {
	if err := m.publish(ctx); err != nil {
		m.log.Error("publishing services", "err", err)
	}
}

// publish makes the running state visible: each service's virtual IP
// balances over its ready replicas (for workloads without a proxy), every
// host resolves every service name, the controller's manifests list the
// ready replicas (for the proxies), and Prometheus scrapes every proxy.
func (m *Mesh) publish(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	wanted := map[netip.AddrPort]bool{}
	for _, s := range m.plan.services {
		vip := m.vips[serviceKey(s)]
		for _, p := range s.Spec.Ports {
			addr := netip.AddrPortFrom(vip, uint16(p.Port))
			wanted[addr] = true
			errs = append(errs, m.net.SetService(ctx, addr, m.backends(s, p)))
		}
	}
	for addr := range m.publishedVIPs {
		if !wanted[addr] {
			errs = append(errs, m.net.DeleteService(ctx, addr))
		}
	}
	m.publishedVIPs = wanted
	for _, r := range m.workloads {
		for _, in := range r.instances {
			errs = append(errs, in.host.WriteFile("hosts", m.hostsFile(in.spec.Namespace, in.name, in.host.IP)))
		}
	}
	for _, h := range []*netns.Host{m.controller, m.prometheus} {
		if h != nil {
			errs = append(errs, h.WriteFile("hosts", m.hostsFile("skein-system", h.Name, h.IP)))
		}
	}
	errs = append(errs, m.writeControllerManifests(), m.writeTargets())
	return errors.Join(errs...)
}

// backends are the ready replicas' addresses for service port p; the caller
// holds m.mu.
func (m *Mesh) backends(s *corev1.Service, p corev1.ServicePort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, r := range m.workloads {
		if !selects(s, r.spec) {
			continue
		}
		port := targetPort(p, r.spec)
		if port == 0 {
			continue
		}
		for _, in := range r.instances {
			if in.ready.Load() {
				out = append(out, netip.AddrPortFrom(in.host.IP, port))
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// hostsFile is /etc/hosts for a host in namespace ns: itself, and every
// service by its DNS names; the caller holds m.mu.
func (m *Mesh) hostsFile(ns, name string, ip netip.Addr) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by skein up\n127.0.0.1\tlocalhost\n::1\tlocalhost\n%s\t%s\n", ip, name)
	for _, s := range m.plan.services {
		fmt.Fprintf(&b, "%s\t%s\n", m.vips[serviceKey(s)], strings.Join(dnsNames(s, ns), " "))
	}
	return []byte(b.String())
}

// writeHosts writes one replica's hosts file before its processes start.
func (m *Mesh) writeHosts(in *instance) error {
	m.mu.Lock()
	data := m.hostsFile(in.spec.Namespace, in.name, in.host.IP)
	m.mu.Unlock()
	return in.host.WriteFile("hosts", data)
}

// writeControllerManifests tells the controller what runs: the services
// with their virtual IPs, each workload with the addresses of its running
// replicas (the unready ones marked), and the routes. The caller holds m.mu (or nothing runs yet).
func (m *Mesh) writeControllerManifests() error {
	var docs []string
	for _, s := range m.plan.services {
		out := s.DeepCopy()
		out.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
		out.Spec.ClusterIP = m.vips[serviceKey(s)].String()
		out.Spec.ClusterIPs = nil
		b, err := yaml.Marshal(out)
		if err != nil {
			return err
		}
		docs = append(docs, string(b))
	}
	for _, w := range m.plan.workloads {
		out := w.DeepCopy()
		out.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.WorkloadKind}
		out.Spec.Addresses = nil
		if r, ok := m.workloads[workloadKey(w)]; ok {
			// Every running replica, in replica order (so that the
			// controller's "<name>-<i>" is the replica's POD_NAME); the
			// unready ones marked, so that their proxies still get their
			// inbound policy, which the readiness probe must pass.
			for _, in := range r.instances {
				out.Spec.Addresses = append(out.Spec.Addresses, in.host.IP.String())
				if !in.ready.Load() {
					out.Spec.NotReadyAddresses = append(out.Spec.NotReadyAddresses, in.host.IP.String())
				}
			}
		}
		n := int32(len(out.Spec.Addresses))
		out.Spec.Replicas = &n
		b, err := yaml.Marshal(out)
		if err != nil {
			return err
		}
		docs = append(docs, string(b))
	}
	// Routes go as they were written: they name Services, not addresses.
	for _, r := range m.plan.httpRoutes {
		out := r.DeepCopy()
		out.TypeMeta = metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "HTTPRoute"}
		b, err := yaml.Marshal(out)
		if err != nil {
			return err
		}
		docs = append(docs, string(b))
	}
	for _, r := range m.plan.grpcRoutes {
		out := r.DeepCopy()
		out.TypeMeta = metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "GRPCRoute"}
		b, err := yaml.Marshal(out)
		if err != nil {
			return err
		}
		docs = append(docs, string(b))
	}
	// So do namespaces and authorization policy objects: the decoder set
	// their apiVersion and kind.
	for _, o := range m.plan.authz {
		b, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		docs = append(docs, string(b))
	}
	return atomicfile.Write(m.path(controllerDir, "mesh.yaml"), []byte(strings.Join(docs, "---\n")), 0o644)
}
