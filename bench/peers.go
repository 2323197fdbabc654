package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// A peer is another proxy measured in the same run as Skein: one plain hop
// in the load host, listening on 127.0.0.1 (one port per protocol) and
// forwarding to the service VIP, so the path is load -> peer -> server, the
// same shape for every peer (a pair scenario adds a second hop in the
// server host, see peerPair). Each runs from its Debian package with the
// settings its documentation recommends for a reverse proxy (upstream
// keep-alive, HTTP/2 without TLS for gRPC) and its default worker count.
type peer struct {
	program string // on PATH once its Debian package is installed
	// config returns the peer's configuration file: it listens on
	// listen(p) for each protocol p and forwards to upstream(p); dir is a
	// private directory for its state.
	config func(listen, upstream func(Protocol) netip.AddrPort, dir string) string
	// args are the program's arguments, given the configuration file.
	args func(conf, dir string) []string
	env  func(dir string) []string
}

// peerPort is where a peer listens for protocol p in the load host.
func peerPort(p Protocol) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port+10000)
}

// protocolNamed returns the Protocols entry called name.
func protocolNamed(name string) Protocol {
	for _, p := range Protocols {
		if p.Name == name {
			return p
		}
	}
	panic("bench: no protocol " + name)
}

var haproxy = peer{
	program: "haproxy",
	config: func(listen, upstream func(Protocol) netip.AddrPort, _ string) string {
		h1, grpc := protocolNamed("http1"), protocolNamed("grpc")
		return fmt.Sprintf(`global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend http1
    bind %s
    default_backend http1
backend http1
    http-reuse always
    server fortio %s
frontend grpc
    bind %s proto h2
    default_backend grpc
backend grpc
    http-reuse always
    server fortio %s proto h2
`, listen(h1), upstream(h1), listen(grpc), upstream(grpc))
	},
	// -db: stay in the foreground, as one process.
	args: func(conf, _ string) []string { return []string{"-db", "-f", conf} },
}

var nginx = peer{
	program: "nginx",
	config: func(listen, upstream func(Protocol) netip.AddrPort, dir string) string {
		h1, grpc := protocolNamed("http1"), protocolNamed("grpc")
		return fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    upstream http1 { server %[3]s; keepalive 32; }
    upstream grpc { server %[5]s; keepalive 32; }
    server {
        listen %[2]s;
        location / {
            proxy_pass http://http1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen %[4]s http2;
        location / { grpc_pass grpc://grpc; }
    }
}
`, dir, listen(h1), upstream(h1), listen(grpc), upstream(grpc))
	},
	// The master process stays in the foreground; its workers are its
	// children, and their cost is counted with it (readTreeUsage).
	args: func(conf, dir string) []string {
		return []string{"-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}
	},
}

var caddy = peer{
	program: "caddy",
	config: func(listen, upstream func(Protocol) netip.AddrPort, _ string) string {
		h1, grpc := protocolNamed("http1"), protocolNamed("grpc")
		return fmt.Sprintf(`{
	admin off
	auto_https off
	servers %[3]s {
		protocols h1 h2c
	}
}
http://%[1]s {
	bind %[5]s
	reverse_proxy %[2]s
}
http://%[3]s {
	bind %[6]s
	reverse_proxy %[4]s {
		transport http {
			versions h2c
		}
	}
}
`, listen(h1), upstream(h1), listen(grpc), upstream(grpc), listen(h1).Addr(), listen(grpc).Addr())
	},
	args: func(conf, _ string) []string {
		return []string{"run", "--config", conf, "--adapter", "caddyfile"}
	},
	// Caddy keeps its state under $HOME or the XDG directories.
	env: func(dir string) []string {
		return []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	},
}

// pairPort is where the server host's peer of a pair listens for protocol
// p, on the server host's address.
func pairPort(tb *testbed, p Protocol) netip.AddrPort {
	return netip.AddrPortFrom(tb.server.IP, p.Port+20000)
}

// loopbackPort is protocol p's port of the fortio server on the server
// host's loopback, where the server host's peer of a pair forwards.
func loopbackPort(p Protocol) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port)
}

// peerHop is one instance of a peer in a deployment.
type peerHop struct {
	role             string // as in reports: "proxy" alone, "client" and "server" in a pair
	host             *netns.Host
	listen, upstream func(Protocol) netip.AddrPort
}

// onePeer is a scenario running one hop of pr in the load host.
func onePeer(name, about string, pr peer) Scenario {
	deploy := func(ctx context.Context, tb *testbed) (*deployment, error) {
		return startPeerHops(ctx, tb, pr, []peerHop{{role: "proxy", host: tb.load, listen: peerPort, upstream: tb.target}})
	}
	return Scenario{Name: name, About: about, deploy: deploy, Peer: pr.program, Proxies: 1}
}

// peerPair is a scenario running pr in both hosts, as a sidecar pair sits:
// the load host's instance on loopback forwards to the server host's,
// which forwards to the fortio server on its loopback. Plain HTTP between
// the two, and no redirects: the least a pair of this peer can add. It runs
// only when named, outside the default run the published figures compare
// with.
func peerPair(name, about string, pr peer) Scenario {
	deploy := func(ctx context.Context, tb *testbed) (*deployment, error) {
		toServerHost := func(p Protocol) netip.AddrPort { return pairPort(tb, p) }
		return startPeerHops(ctx, tb, pr, []peerHop{
			{role: "client", host: tb.load, listen: peerPort, upstream: toServerHost},
			{role: "server", host: tb.server, listen: toServerHost, upstream: loopbackPort},
		})
	}
	return Scenario{Name: name, About: about, deploy: deploy, Peer: pr.program, Proxies: 2, OnRequest: true}
}

// startPeerHops starts one instance of the peer per hop, in order, each
// accepting on every protocol's port before the next starts.
func startPeerHops(ctx context.Context, tb *testbed, pr peer, hops []peerHop) (*deployment, error) {
	path, ok := tb.peers[pr.program]
	if !ok {
		return nil, fmt.Errorf("%s is not installed", pr.program)
	}
	dep := &deployment{target: peerPort}
	dep.undo = func(context.Context) error {
		for _, s := range dep.sidecars {
			s.proc.stop()
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, hop := range hops {
		name := pr.program // its log and state directory in tb.dir
		if len(hops) > 1 {
			name += "-" + hop.role
		}
		dir := filepath.Join(tb.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return dep, err
		}
		conf := filepath.Join(dir, pr.program+".conf")
		if err := os.WriteFile(conf, []byte(pr.config(hop.listen, hop.upstream, dir)), 0o644); err != nil {
			return dep, fmt.Errorf("writing %s's configuration: %w", pr.program, err)
		}
		cmd := hop.host.Command(context.Background(), path, pr.args(conf, dir)...)
		if pr.env != nil {
			cmd.Env = append(os.Environ(), pr.env(dir)...)
		}
		proc, err := startProcess(name, cmd, tb.dir)
		if err != nil {
			return dep, err
		}
		dep.sidecars = append(dep.sidecars, sidecar{role: hop.role, proc: proc, host: hop.host})
		for _, p := range Protocols {
			if err := waitAccepting(ctx, hop.host, hop.listen(p), proc); err != nil {
				return dep, fmt.Errorf("%s: %w\n%s", name, err, proc.tail(20))
			}
		}
	}
	return dep, nil
}
