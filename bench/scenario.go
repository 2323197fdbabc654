package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// Scenario is one way of carrying the load host's traffic to the server.
// Each measured run deploys the scenario afresh and undoes it afterwards,
// so a proxy's peak memory belongs to that run alone.
type Scenario struct {
	Name  string // as in reports and -scenarios
	About string // one line for the report
	// deploy readies the testbed for one run and returns the processes
	// whose cost is measured.
	deploy func(ctx context.Context, tb *testbed) (*deployment, error)
	// Peer is the program of another proxy the scenario runs (a key of
	// the Debian packages the bench installs); empty for Skein's and
	// direct.
	Peer string
	// Proxies is how many proxy processes a run measures.
	Proxies int
	// OnRequest leaves the scenario out of the default run, whose
	// settings the published figures compare with; -scenarios names it.
	OnRequest bool
}

// ScenarioNames lists the scenarios a run without -scenarios runs, or with
// onRequest those it runs only when named.
func ScenarioNames(onRequest bool) string {
	var names []string
	for _, s := range Scenarios {
		if s.OnRequest == onRequest {
			names = append(names, s.Name)
		}
	}
	return strings.Join(names, ", ")
}

// deployment is one scenario in place on the testbed.
type deployment struct {
	sidecars []sidecar
	// target is where the load generator sends protocol p's traffic; nil
	// means the service VIP, as for a meshed or unproxied client.
	target func(p Protocol) netip.AddrPort
	// undo removes what deploy did; it must work on a half-done deploy.
	undo func(ctx context.Context) error
}

// sidecar is a proxy process and its place on the path ("client" beside
// the load generator, "server" beside the server).
type sidecar struct {
	role string
	proc *process
	host *netns.Host
	// profileURL serves a Go CPU profile (net/http/pprof) inside host;
	// empty when the proxy has none.
	profileURL string
}

// Scenarios is every scenario a benchmark can run, in report order. The
// first is the baseline that added latency is computed against.
var Scenarios = []Scenario{
	{
		Name:  "direct",
		About: "no proxy: load host to server through the service VIP",
		deploy: func(context.Context, *testbed) (*deployment, error) {
			return &deployment{undo: func(context.Context) error { return nil }}, nil
		},
	},
	{
		Name:    "skein",
		About:   "skein-init and skein-proxy in both hosts: client proxy, then server proxy (plain HTTP between them)",
		deploy:  deploySkein,
		Proxies: 2,
	},
	{
		Name:    "skein-mtls",
		About:   "as skein, with identities from a controller: mutual TLS between the proxies",
		deploy:  deploySkeinMTLS,
		Proxies: 2,
	},
	{
		Name:    "skein-mtls-tap",
		About:   "as skein-mtls, with one tap session on the server's proxy matching every request, at its cap (100 events/s)",
		deploy:  deploySkeinMTLSTapped,
		Proxies: 2,
	},
	onePeer("haproxy", "one HAProxy hop in the load host (127.0.0.1), to the service VIP", haproxy),
	onePeer("nginx", "one nginx hop in the load host (127.0.0.1), to the service VIP", nginx),
	onePeer("caddy", "one Caddy hop in the load host (127.0.0.1), to the service VIP", caddy),
	peerPair("haproxy-pair", "an HAProxy hop in each host, as a sidecar pair sits (plain HTTP between them, no redirects)", haproxy),
}

// proxyUID is the uid skein-proxy runs as; skein-init exempts its traffic.
const proxyUID = 2102

// deploySkein does what the injector does for a pod, in both hosts:
// skein-init's rules, then the proxy as its own uid, ready before the run.
func deploySkein(ctx context.Context, tb *testbed) (*deployment, error) {
	return deploySkeinPair(ctx, tb, func(h *netns.Host) []string {
		return []string{"-discovery-file", tb.discoveryFile()}
	})
}

// deploySkeinPair injects a proxy in both hosts, each with the discovery
// and identity flags that discovery returns for its host.
func deploySkeinPair(ctx context.Context, tb *testbed, discovery func(h *netns.Host) []string) (*deployment, error) {
	dep := &deployment{}
	var injected []*netns.Host
	dep.undo = func(ctx context.Context) error {
		for _, s := range dep.sidecars {
			s.proc.stop()
		}
		var errs []error
		for _, h := range injected {
			if _, err := runTool(ctx, "", nil, "ip", "netns", "exec", h.Namespace,
				tb.bin.init, "--cleanup", "--proxy-uid", strconv.Itoa(proxyUID)); err != nil {
				errs = append(errs, fmt.Errorf("skein-init --cleanup in %s: %w", h.Name, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, h := range []struct {
		host *netns.Host
		role string
	}{{tb.load, "client"}, {tb.server, "server"}} {
		injected = append(injected, h.host)
		proc, err := injectProxy(ctx, tb, h.host, discovery(h.host))
		if proc != nil {
			dep.sidecars = append(dep.sidecars, sidecar{role: h.role, proc: proc, host: h.host,
				profileURL: "http://127.0.0.1:4191/debug/pprof/profile"})
		}
		if err != nil {
			return dep, err
		}
	}
	return dep, nil
}

// injectProxy runs skein-init in h and starts skein-proxy there, waiting
// until the proxy is ready. It returns the proxy even when it is not ready,
// so that it can be stopped.
func injectProxy(ctx context.Context, tb *testbed, h *netns.Host, discovery []string) (*process, error) {
	out, err := h.Command(ctx, tb.bin.init, "--proxy-uid", strconv.Itoa(proxyUID)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("skein-init in %s: %w\n%s", h.Name, err, out)
	}
	args := append(discovery,
		// The workload's instance as the controller knows it, so that its
		// inbound policy (all-unauthenticated) is found: a proxy whose
		// instance the controller does not know denies every inbound
		// request (fail closed).
		"-labels", "namespace=bench,workload="+tb.workloadOf(h)+",pod="+tb.workloadOf(h)+"-0",
		// Nothing is in flight when a scenario is taken down: waiting out
		// the 5 s drain delay made every Skein run 10 s longer than a peer's.
		"-drain-delay", "0s",
		"-shutdown-grace", "1s",
	)
	if h == tb.server {
		// The fortio server's ports: their inbound policies are watched
		// from the proxy's start, as an injected pod's are.
		var ports []string
		for _, p := range Protocols {
			ports = append(ports, strconv.Itoa(int(p.Port)))
		}
		args = append(args, "-inbound-ports", strings.Join(ports, ","))
	}
	cmd := h.CommandAs(context.Background(), netns.User{UID: proxyUID, GID: proxyUID}, tb.bin.proxy, args...)
	if len(tb.proxyEnv) > 0 {
		cmd.Env = append(os.Environ(), tb.proxyEnv...)
	}
	proc, err := startProcess("skein-proxy-"+h.Name, cmd, tb.dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := waitReady(ctx, h, "http://127.0.0.1:4191/ready", proc); err != nil {
		return proc, fmt.Errorf("skein-proxy in %s: %w\n%s", h.Name, err, proc.tail(20))
	}
	return proc, nil
}
