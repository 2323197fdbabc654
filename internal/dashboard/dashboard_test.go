package dashboard

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// startDashboard serves NewHandler on a loopback port in front of upstream.
func startDashboard(t *testing.T, upstream http.Handler) string {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	ln, err := Listen(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(ctx, ln, NewHandler(u, nil, ln.Addr().(*net.TCPAddr).Port, nil))
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func TestPassesReadsAndStreamsThem(t *testing.T) {
	release := make(chan struct{})
	addr := startDashboard(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "first line of %s\n", r.URL.Path)
		w.(http.Flusher).Flush()
		<-release // the rest only after the client saw the first line
		fmt.Fprintln(w, "second")
	}))
	defer close(release)
	resp, err := http.Get("http://" + addr + "/api/v1/tap?resource=ns/demo")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first line of /api/v1/tap\n" {
		t.Fatalf("read %q, %v; want the first line before the upstream finished", line, err)
	}
}

func TestRefusesOtherHostsAndWrites(t *testing.T) {
	reached := false
	addr := startDashboard(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	_, port, _ := net.SplitHostPort(addr)
	for _, tt := range []struct {
		method, host string
		want         int
	}{
		{http.MethodGet, "evil.example:" + port, http.StatusMisdirectedRequest},
		{http.MethodGet, "127.0.0.1:1", http.StatusMisdirectedRequest},
		{http.MethodPost, addr, http.StatusMethodNotAllowed},
		{http.MethodDelete, "localhost:" + port, http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tt.method, "http://"+addr+"/api/v1/authz/simulate", nil)
		req.Host = tt.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s with Host %s: %d, want %d", tt.method, tt.host, resp.StatusCode, tt.want)
		}
	}
	if reached {
		t.Error("a refused request reached the controller's API")
	}
}
