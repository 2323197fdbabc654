package kubelet

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skeinmesh/skein/internal/netns"
)

// clusterDomain is the DNS suffix of Service names, as in most clusters.
const clusterDomain = "cluster.local"

// serviceProxy plays kube-proxy and the cluster DNS for the node: every
// ClusterIP Service port becomes a DNAT rule in the network's hub to the
// ready endpoints of its EndpointSlices (netns.Network.SetService), and
// every pod host gets an /etc/hosts naming each Service
// (NAME.NAMESPACE.svc.cluster.local, and NAME within the pod's namespace).
type serviceProxy struct {
	network *netns.Network
	log     *slog.Logger

	services listerscorev1.ServiceLister
	slices   listersdiscoveryv1.EndpointSliceLister
	factory  informers.SharedInformerFactory
	changed  chan struct{} // a Service or EndpointSlice changed; capacity 1

	mu      sync.Mutex
	applied map[netip.AddrPort][]netip.AddrPort // what the hub has
	hosts   map[*netns.Host]podName             // pod hosts and whose they are
}

type podName struct{ namespace, name string }

func newServiceProxy(cfg Config) *serviceProxy {
	factory := informers.NewSharedInformerFactory(cfg.Client, 0)
	s := &serviceProxy{
		network:  cfg.Network,
		log:      cfg.Log,
		services: factory.Core().V1().Services().Lister(),
		slices:   factory.Discovery().V1().EndpointSlices().Lister(),
		factory:  factory,
		changed:  make(chan struct{}, 1),
		applied:  map[netip.AddrPort][]netip.AddrPort{},
		hosts:    map[*netns.Host]podName{},
	}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke(s.changed) },
		UpdateFunc: func(any, any) { s.poke(s.changed) },
		DeleteFunc: func(any) { s.poke(s.changed) },
	}
	for _, inf := range []cache.SharedIndexInformer{
		factory.Core().V1().Services().Informer(),
		factory.Discovery().V1().EndpointSlices().Informer(),
	} {
		if _, err := inf.AddEventHandler(notify); err != nil {
			// Only fails on a stopped informer; these have not started.
			panic(err)
		}
	}
	return s
}

func (s *serviceProxy) poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// start runs the informers and waits for their first lists, so that the
// first pods already find every Service in their /etc/hosts.
func (s *serviceProxy) start(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	for typ, ok := range s.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("service proxy: syncing %v: %w", typ, ctx.Err())
		}
	}
	s.sync(ctx)
	return nil
}

// run applies every change until ctx ends, then removes the hub's rules and
// waits for the informers.
func (s *serviceProxy) run(ctx context.Context) {
	defer s.factory.Shutdown()
	for {
		select {
		case <-ctx.Done():
			s.clear()
			return
		case <-s.changed:
			s.sync(ctx)
		}
	}
}

// addHost gives a pod's host its /etc/hosts now and keeps it up to date.
// Its /etc/resolv.conf names no server that answers, so that a lookup of
// any other name fails at once rather than after the machine's resolver
// times out (its server is out of the network's reach), and has the
// cluster's search path.
func (s *serviceProxy) addHost(h *netns.Host, pod podName) error {
	s.mu.Lock()
	s.hosts[h] = pod
	s.mu.Unlock()
	resolv := fmt.Sprintf("nameserver 127.0.0.1\nsearch %[1]s.svc.%[2]s svc.%[2]s %[2]s\noptions ndots:5\n", pod.namespace, clusterDomain)
	if err := h.WriteFile("resolv.conf", []byte(resolv)); err != nil {
		return err
	}
	return h.WriteFile("hosts", s.hostsFile(h, pod))
}

func (s *serviceProxy) removeHost(h *netns.Host) {
	s.mu.Lock()
	delete(s.hosts, h)
	s.mu.Unlock()
}

// sync brings the hub's rules and the hosts files in line with the
// Services and EndpointSlices. A rule that fails is retried at the next
// change or after a second.
func (s *serviceProxy) sync(ctx context.Context) {
	want := s.desired()
	failed := false
	for vip, backends := range want {
		if old, ok := s.applied[vip]; ok && slices.Equal(old, backends) {
			continue
		}
		if err := s.network.SetService(ctx, vip, backends); err != nil {
			s.log.Warn("service proxy: setting service", "vip", vip, "err", err)
			failed = true
			continue
		}
		s.applied[vip] = backends
		s.log.Debug("service proxy: service set", "vip", vip, "backends", backends)
	}
	for vip := range s.applied {
		if _, ok := want[vip]; ok {
			continue
		}
		if err := s.network.DeleteService(ctx, vip); err != nil {
			s.log.Warn("service proxy: deleting service", "vip", vip, "err", err)
			failed = true
			continue
		}
		delete(s.applied, vip)
	}
	s.writeHostsFiles()
	if failed {
		time.AfterFunc(time.Second, func() { s.poke(s.changed) })
	}
}

// desired is every ClusterIP Service port and the ready endpoints behind
// it, sorted so that unchanged sets compare equal.
func (s *serviceProxy) desired() map[netip.AddrPort][]netip.AddrPort {
	want := map[netip.AddrPort][]netip.AddrPort{}
	services, err := s.services.List(labels.Everything())
	if err != nil {
		return want
	}
	for _, svc := range services {
		vip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !vip.Is4() {
			continue // headless, or not yet allocated
		}
		selector := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
		endpointSlices, _ := s.slices.EndpointSlices(svc.Namespace).List(selector)
		for _, port := range svc.Spec.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			want[netip.AddrPortFrom(vip, uint16(port.Port))] = readyBackends(endpointSlices, port.Name)
		}
	}
	return want
}

func readyBackends(endpointSlices []*discoveryv1.EndpointSlice, portName string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, slice := range endpointSlices {
		for _, p := range slice.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != portName) || (p.Name == nil && portName != "") {
				continue
			}
			for _, e := range slice.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					if addr, err := netip.ParseAddr(a); err == nil && addr.Is4() {
						out = append(out, netip.AddrPortFrom(addr, uint16(*p.Port)))
					}
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(out)
}

// clear removes every rule the proxy made.
func (s *serviceProxy) clear() {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for vip := range s.applied {
		if err := s.network.DeleteService(ctx, vip); err != nil {
			s.log.Warn("service proxy: deleting service", "vip", vip, "err", err)
		}
	}
	clear(s.applied)
}

func (s *serviceProxy) writeHostsFiles() {
	s.mu.Lock()
	hosts := make(map[*netns.Host]podName, len(s.hosts))
	for h, pod := range s.hosts {
		hosts[h] = pod
	}
	s.mu.Unlock()
	for h, pod := range hosts {
		if err := h.WriteFile("hosts", s.hostsFile(h, pod)); err != nil {
			s.log.Warn("service proxy: writing hosts file", "host", h.Name, "err", err)
		}
	}
}

// hostsFile is what a pod's /etc/hosts says: itself, then every Service
// with a cluster IP by its full name, and by its short name too when in
// the pod's namespace (what the cluster DNS and the search path give).
func (s *serviceProxy) hostsFile(h *netns.Host, pod podName) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost\n")
	fmt.Fprintf(&b, "%s\t%s\n", h.IP, pod.name)
	services, _ := s.services.List(labels.Everything())
	slices.SortFunc(services, func(a, b *corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, svc := range services {
		if _, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil {
			continue
		}
		names := []string{
			svc.Name + "." + svc.Namespace + ".svc." + clusterDomain,
			svc.Name + "." + svc.Namespace + ".svc",
			svc.Name + "." + svc.Namespace,
		}
		if svc.Namespace == pod.namespace {
			names = append(names, svc.Name)
		}
		fmt.Fprintf(&b, "%s\t%s\n", svc.Spec.ClusterIP, strings.Join(names, " "))
	}
	return []byte(b.String())
}

// apiServerEnv is what the kubelet tells every container about the API
// server, from the "kubernetes" Service, as client-go's in-cluster
// configuration expects.
func (s *serviceProxy) apiServerEnv() []corev1.EnvVar {
	svc, err := s.services.Services("default").Get("kubernetes")
	if err != nil || svc.Spec.ClusterIP == "" {
		return nil
	}
	for _, p := range svc.Spec.Ports {
		if p.Name == "https" {
			port := strconv.Itoa(int(p.Port))
			return []corev1.EnvVar{
				{Name: "KUBERNETES_SERVICE_HOST", Value: svc.Spec.ClusterIP},
				{Name: "KUBERNETES_SERVICE_PORT", Value: port},
				{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: port},
			}
		}
	}
	return nil
}
