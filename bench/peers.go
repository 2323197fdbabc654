package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// A peer is another proxy measured in the same run as Skein: one plain hop
// in the load host, listening on 127.0.0.1 (one port per protocol) and
// forwarding to the service VIP, so the path is load -> peer -> server, the
// same shape for every peer. Each runs from its Debian package with the
// settings its documentation recommends for a reverse proxy (upstream
// keep-alive, HTTP/2 without TLS for gRPC) and its default worker count.
type peer struct {
	program string // on PATH once its Debian package is installed
	// config returns the peer's configuration file for the testbed;
	// dir is a private directory for its state.
	config func(tb *testbed, dir string) string
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
	config: func(tb *testbed, _ string) string {
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
`, peerPort(h1), tb.target(h1), peerPort(grpc), tb.target(grpc))
	},
	// -db: stay in the foreground, as one process.
	args: func(conf, _ string) []string { return []string{"-db", "-f", conf} },
}

var nginx = peer{
	program: "nginx",
	config: func(tb *testbed, dir string) string {
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
`, dir, peerPort(h1), tb.target(h1), peerPort(grpc), tb.target(grpc))
	},
	// The master process stays in the foreground; its workers are its
	// children, and their cost is counted with it (readTreeUsage).
	args: func(conf, dir string) []string {
		return []string{"-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}
	},
}

var caddy = peer{
	program: "caddy",
	config: func(tb *testbed, _ string) string {
		h1, grpc := protocolNamed("http1"), protocolNamed("grpc")
		return fmt.Sprintf(`{
	admin off
	auto_https off
	servers %[3]s {
		protocols h1 h2c
	}
}
http://%[1]s {
	bind 127.0.0.1
	reverse_proxy %[2]s
}
http://%[3]s {
	bind 127.0.0.1
	reverse_proxy %[4]s {
		transport http {
			versions h2c
		}
	}
}
`, peerPort(h1), tb.target(h1), peerPort(grpc), tb.target(grpc))
	},
	args: func(conf, _ string) []string {
		return []string{"run", "--config", conf, "--adapter", "caddyfile"}
	},
	// Caddy keeps its state under $HOME or the XDG directories.
	env: func(dir string) []string {
		return []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	},
}

// deployPeer starts the peer in the load host and points the load at it.
func deployPeer(pr peer) func(ctx context.Context, tb *testbed) (*deployment, error) {
	return func(ctx context.Context, tb *testbed) (*deployment, error) {
		path, ok := tb.peers[pr.program]
		if !ok {
			return nil, fmt.Errorf("%s is not installed", pr.program)
		}
		dir := filepath.Join(tb.dir, pr.program)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, pr.program+".conf")
		if err := os.WriteFile(conf, []byte(pr.config(tb, dir)), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s's configuration: %w", pr.program, err)
		}
		cmd := tb.load.Command(context.Background(), path, pr.args(conf, dir)...)
		if pr.env != nil {
			cmd.Env = append(os.Environ(), pr.env(dir)...)
		}
		proc, err := startProcess(pr.program, cmd, tb.dir)
		if err != nil {
			return nil, err
		}
		dep := &deployment{
			sidecars: []sidecar{{role: "proxy", proc: proc, host: tb.load}},
			target:   peerPort,
			undo:     func(context.Context) error { proc.stop(); return nil },
		}
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		for _, p := range Protocols {
			if err := waitAccepting(ctx, tb.load, peerPort(p), proc); err != nil {
				return dep, fmt.Errorf("%s: %w\n%s", pr.program, err, proc.tail(20))
			}
		}
		return dep, nil
	}
}
