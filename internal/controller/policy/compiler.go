// Package policy compiles the outbound policy of every destination (one
// Service port) from the model's Services, their skein.io/ annotations and
// the Gateway API HTTPRoutes and GRPCRoutes attached to them (GAMMA:
// parentRefs of kind Service), and serves it to proxies as a stream per
// destination (the WatchOutbound gRPC API). It validates every object and
// names the object and field of each problem; an invalid object is
// rejected whole while its last good version keeps serving.
package policy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
)

// Compiler turns policy inputs into compiled policies, remembering the last
// good version of every object across calls. It is not safe for concurrent
// use: one goroutine calls Update; the Compiled values it returns are
// immutable and safe to share.
type Compiler struct {
	lastRoutes   map[string]*compiledRoute // by "Kind ns/name"
	lastServices map[svcKey]settings
}

// NewCompiler returns a Compiler with no history.
func NewCompiler() *Compiler {
	return &Compiler{lastRoutes: map[string]*compiledRoute{}, lastServices: map[svcKey]settings{}}
}

type svcKey struct{ namespace, name string }

func (k svcKey) String() string { return k.namespace + "/" + k.name }

// Compiled is the outcome of one Update: the policy of every destination
// and the problems found.
type Compiled struct {
	// Version is the model's PolicyInputs.Version compiled.
	Version uint64
	// Errors lists every invalid object, in a stable order. Each is an
	// *Error.
	Errors []*Error

	clusterDomain string
	services      map[svcKey]*model.Service
	servicesByIP  map[netip.Addr]*model.Service
	defaults      map[svcKey]settings
	// attached lists the routes attached to each Service.
	attached map[svcKey][]*compiledRoute

	mu       sync.Mutex
	policies map[svcPort]*routes.Policy
}

type svcPort struct {
	svc  svcKey
	port uint16
}

// Update compiles in. Objects that are invalid now but were valid before
// keep their last good version; objects gone from in are forgotten.
func (c *Compiler) Update(in model.PolicyInputs) *Compiled {
	out := &Compiled{
		Version:       in.Version,
		clusterDomain: in.ClusterDomain,
		services:      map[svcKey]*model.Service{},
		servicesByIP:  map[netip.Addr]*model.Service{},
		defaults:      map[svcKey]settings{},
		attached:      map[svcKey][]*compiledRoute{},
		policies:      map[svcPort]*routes.Policy{},
	}
	for _, s := range in.Services {
		key := svcKey{s.Namespace, s.Name}
		out.services[key] = s
		for _, ip := range s.ClusterIPs {
			if _, taken := out.servicesByIP[ip]; !taken {
				out.servicesByIP[ip] = s
			}
		}
	}
	seenServices := map[svcKey]bool{}
	for _, s := range in.Services {
		key := svcKey{s.Namespace, s.Name}
		seenServices[key] = true
		set, errs := parseSettings(s.Annotations, true)
		if len(errs) > 0 {
			out.Errors = append(out.Errors, objectRef{"Service", s.Namespace, s.Name}.annotationErrors(errs)...)
			set = c.lastServices[key] // nil (the built-in defaults) when never good
		} else {
			c.lastServices[key] = set
		}
		out.defaults[key] = set
	}
	for key := range c.lastServices {
		if !seenServices[key] {
			delete(c.lastServices, key)
		}
	}

	env := &compileEnv{clusterDomain: in.ClusterDomain, services: out.services}
	seenRoutes := map[string]bool{}
	var compiled []*compiledRoute
	keep := func(id string, r *compiledRoute, errs []*Error) {
		seenRoutes[id] = true
		if len(errs) > 0 {
			out.Errors = append(out.Errors, errs...)
			r = c.lastRoutes[id] // nil when never good
		} else if r != nil {
			c.lastRoutes[id] = r
		}
		if r != nil {
			compiled = append(compiled, r)
		}
	}
	for _, r := range in.HTTPRoutes {
		cr, errs := env.httpRoute(r)
		keep("HTTPRoute "+r.Namespace+"/"+r.Name, cr, errs)
	}
	for _, r := range in.GRPCRoutes {
		cr, errs := env.grpcRoute(r)
		keep("GRPCRoute "+r.Namespace+"/"+r.Name, cr, errs)
	}
	for id := range c.lastRoutes {
		if !seenRoutes[id] {
			delete(c.lastRoutes, id)
		}
	}
	for _, r := range compiled {
		for _, p := range r.parents {
			if !slices.Contains(out.attached[p.svc], r) {
				out.attached[p.svc] = append(out.attached[p.svc], r)
			}
		}
	}
	return out
}

// Policy returns the policy of dst: "name.ns.svc.<cluster-domain>:port" or
// a Service's "clusterIP:port". It is nil when dst names no Service port
// the model knows. The result is shared: do not modify it.
func (c *Compiled) Policy(dst string) *routes.Policy {
	svc, port, ok := c.lookup(dst)
	if !ok {
		return nil
	}
	key := svcPort{svcKey{svc.Namespace, svc.Name}, port}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.policies[key]; ok {
		return p
	}
	p := c.build(svc, port)
	c.policies[key] = p
	return p
}

// lookup finds the Service and port dst names.
func (c *Compiled) lookup(dst string) (*model.Service, uint16, bool) {
	host, portText, err := net.SplitHostPort(dst)
	if err != nil {
		return nil, 0, false
	}
	n, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || n == 0 {
		return nil, 0, false
	}
	port := uint16(n)
	var svc *model.Service
	if addr, err := netip.ParseAddr(host); err == nil {
		svc = c.servicesByIP[addr.Unmap()]
	} else {
		name := strings.TrimSuffix(strings.ToLower(host), ".")
		rest, ok := strings.CutSuffix(name, ".svc."+c.clusterDomain)
		svcName, ns, ok2 := strings.Cut(rest, ".")
		if ok && ok2 && !strings.Contains(ns, ".") {
			svc = c.services[svcKey{ns, svcName}]
		}
	}
	if svc == nil || !slices.ContainsFunc(svc.Ports, func(p model.ServicePort) bool { return p.Port == port }) {
		return nil, 0, false
	}
	return svc, port, true
}

// ValidateHTTPRoute and ValidateGRPCRoute check one route against the
// Services in services, as the compiler would, for sources that want to
// refuse a bad manifest before it reaches the model.
func ValidateHTTPRoute(r *gatewayv1.HTTPRoute, services []*model.Service, clusterDomain string) []*Error {
	_, errs := newEnv(services, clusterDomain).httpRoute(r)
	return errs
}

// ValidateGRPCRoute: see ValidateHTTPRoute.
func ValidateGRPCRoute(r *gatewayv1.GRPCRoute, services []*model.Service, clusterDomain string) []*Error {
	_, errs := newEnv(services, clusterDomain).grpcRoute(r)
	return errs
}

// ValidateServiceAnnotations checks the skein.io/ policy annotations of a
// Service.
func ValidateServiceAnnotations(s *model.Service) []*Error {
	_, errs := parseSettings(s.Annotations, true)
	return objectRef{"Service", s.Namespace, s.Name}.annotationErrors(errs)
}

func newEnv(services []*model.Service, clusterDomain string) *compileEnv {
	env := &compileEnv{clusterDomain: clusterDomain, services: map[svcKey]*model.Service{}}
	for _, s := range services {
		env.services[svcKey{s.Namespace, s.Name}] = s
	}
	return env
}

// compileEnv is what compiling a route needs to know of the rest.
type compileEnv struct {
	clusterDomain string
	services      map[svcKey]*model.Service
}

func (e *compileEnv) authority(svc svcKey, port uint16) string {
	return fmt.Sprintf("%s.%s.svc.%s:%d", svc.name, svc.namespace, e.clusterDomain, port)
}

// compiledRoute is a valid route, ready to join the policy of each Service
// port it attaches to.
type compiledRoute struct {
	ref      objectRef
	created  time.Time
	grpc     bool
	parents  []parent
	settings settings // the route's own annotations
	rules    []compiledRule
}

// parent is a Service port a route attaches to; port 0 means every port,
// portName (a parentRef's sectionName) one named port.
type parent struct {
	svc      svcKey
	port     uint16
	portName string
}

func (p parent) attaches(svc *model.Service, port uint16) bool {
	if p.svc != (svcKey{svc.Namespace, svc.Name}) || (p.port != 0 && p.port != port) {
		return false
	}
	if p.portName == "" {
		return true
	}
	return slices.ContainsFunc(svc.Ports, func(sp model.ServicePort) bool { return sp.Port == port && sp.Name == p.portName })
}

// compiledRule is one rule with what the destination decides left open:
// backends without a port take the destination's, and the Service's
// annotations are merged in per destination.
type compiledRule struct {
	rule routes.Rule
	// precedence of each of rule.Matches (one implicit when there are none).
	precedence []precedence
	// timeouts.request/backendRequest of the Gateway API, when set: they
	// win over annotations.
	request, backendRequest *time.Duration
	// retry is the Gateway API's rules[].retry, when set.
	retry *gatewayRetry
}

type gatewayRetry struct {
	codes    []routes.StatusRange
	attempts *int
	backoff  *time.Duration
}
