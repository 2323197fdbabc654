package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
}

// deployment is one scenario in place on the testbed.
type deployment struct {
	sidecars []sidecar
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
		Name:   "skein",
		About:  "skein-init and skein-proxy in both hosts: client proxy, then server proxy (plain HTTP between them)",
		deploy: deploySkein,
	},
}

// proxyUID is the uid skein-proxy runs as; skein-init exempts its traffic.
const proxyUID = 2102

// deploySkein does what the injector does for a pod, in both hosts:
// skein-init's rules, then the proxy as its own uid, ready before the run.
func deploySkein(ctx context.Context, tb *testbed) (*deployment, error) {
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
		proc, err := injectProxy(ctx, tb, h.host)
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
func injectProxy(ctx context.Context, tb *testbed, h *netns.Host) (*process, error) {
	out, err := h.Command(ctx, tb.bin.init, "--proxy-uid", strconv.Itoa(proxyUID)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("skein-init in %s: %w\n%s", h.Name, err, out)
	}
	cmd := h.CommandAs(context.Background(), netns.User{UID: proxyUID, GID: proxyUID}, tb.bin.proxy,
		"-discovery-file", tb.discoveryFile(),
		"-labels", "namespace=bench,pod="+h.Name,
		"-shutdown-grace", "1s",
	)
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
