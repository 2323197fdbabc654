package h1

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// proxy is an h1.Server whose Handler forwards every request to an
// h1.Client, on loopback.
type proxy struct {
	addr    string
	srv     *Server
	client  *Client
	accepts atomic.Int32
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startProxy serves on loopback, forwarding to upstream (host:port).
func startProxy(t testing.TB, cfg Config, upstream string) *proxy {
	t.Helper()
	client := NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", upstream)
	}, cfg, quietLog())
	return startServer(t, cfg, client, client)
}

func startServer(t testing.TB, cfg Config, h stack.Handler, client *Client) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), srv: NewServer(h, cfg, quietLog()), client: client}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepts.Add(1)
			go p.srv.ServeConn(c, &stack.ConnInfo{Direction: "outbound"})
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if client != nil {
			client.Close()
		}
	})
	return p
}

// backend is a net/http server that counts its connections.
type backend struct {
	*httptest.Server
	conns atomic.Int32
	hits  atomic.Int32
}

func startBackend(t testing.TB, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) hostPort() string { return strings.TrimPrefix(b.URL, "http://") }

// httpClient is Go's HTTP/1.1 client sending everything through p.
func (p *proxy) httpClient(t testing.TB) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.addr)
		},
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

func TestProxiedGETsShareOneConnectionEachSide(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	})
	p := startProxy(t, Config{}, be.hostPort())
	hc := p.httpClient(t)
	for i, path := range []string{"/a", "/b", "/c"} {
		resp, err := hc.Get("http://web.test" + path)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		if got := readAll(t, resp); resp.StatusCode != 200 || got != "hello "+path || resp.Header.Get("X-Path") != path {
			t.Fatalf("GET %s: %d %q %v", path, resp.StatusCode, got, resp.Header)
		}
		if resp.ContentLength != int64(len("hello "+path)) {
			t.Errorf("GET %s: Content-Length %d, want it known", path, resp.ContentLength)
		}
	}
	if n := p.accepts.Load(); n != 1 {
		t.Errorf("proxy accepted %d connections, want 1", n)
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections, want 1", n)
	}
}

func TestConcurrentClientsShareThePool(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append([]byte(r.URL.Path+":"), b...))
	})
	p := startProxy(t, Config{}, be.hostPort())
	hc := p.httpClient(t)
	const workers, each = 16, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				path := "/" + strings.Repeat("w", w+1) + "/" + string(rune('a'+i%26))
				var body io.Reader
				if i%3 == 1 {
					body = strings.NewReader("small")
				} else if i%3 == 2 {
					body = chunkedReader{strings.NewReader(strings.Repeat("c", 70000))}
				}
				req, _ := http.NewRequest("POST", "http://web.test"+path, body)
				resp, err := hc.Do(req)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				want := path + ":"
				if i%3 == 1 {
					want += "small"
				} else if i%3 == 2 {
					want += strings.Repeat("c", 70000)
				}
				if err != nil || string(got) != want {
					errs <- fmt.Errorf("%s: got %d bytes (%v), want %d", path, len(got), err, len(want))
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := be.conns.Load(); n > workers {
		t.Errorf("backend saw %d connections for %d concurrent clients: the pool does not reuse", n, workers)
	}
}
