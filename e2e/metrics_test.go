package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/netns"
)

// scrape reads a proxy's /metrics from inside its host.
func scrape(t *testing.T, h *netns.Host) metricSet {
	t.Helper()
	return scrapeAt(t, h, "127.0.0.1")
}

// scrapeAt reads the metrics of the proxy at ip, from inside h.
func scrapeAt(t *testing.T, h *netns.Host, ip string) metricSet {
	t.Helper()
	resp, err := httpClient(h).Get("http://" + ip + ":4191/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics of %s: %v", ip, err)
	}
	return metricSet(fams)
}

type metricSet map[string]*dto.MetricFamily

// sum adds the values of every series of name whose labels include want.
func (ms metricSet) sum(name string, want map[string]string) float64 {
	fam, ok := ms[name]
	if !ok {
		return 0
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// countingConn counts the bytes a client wrote and read.
type countingConn struct {
	net.Conn
	read, written *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func TestMetricsMatchTheTrafficSent(t *testing.T) {
	s := getShared(t)
	target := addrPort(s.vip, portHTTP).String()
	authority := "web.test.svc.cluster.local:8081"
	before := scrape(t, s.client)
	var serversBefore []metricSet
	for _, h := range s.servers {
		serversBefore = append(serversBefore, scrape(t, h))
	}

	var read, written atomic.Int64
	dial := dialer(s.client)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, target)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, read: &read, written: &written}, nil
	}}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	sent := map[int]int{200: 20, 503: 10, 404: 5}
	for code, n := range sent {
		for range n {
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/status/%d", authority, code), nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Fatalf("asked for %d, got %d", code, resp.StatusCode)
			}
		}
	}
	tr.CloseIdleConnections()

	out := map[string]string{"direction": "outbound", "authority": authority}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range out {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	// The proxy counts a connection's close when it sees it, and a request
	// once its handler returns, which can be just after the client read the
	// last byte of the answer: poll briefly.
	var after metricSet
	tcpOut := map[string]string{"direction": "outbound", "target_addr": target}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = scrape(t, s.client)
		closed := after.sum("tcp_close_total", tcpOut) - before.sum("tcp_close_total", tcpOut)
		answered := after.sum("response_latency_ms", out) - before.sum("response_latency_ms", out)
		if (closed >= 1 && answered >= 35) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	delta := func(name string, labels map[string]string) float64 {
		return after.sum(name, labels) - before.sum(name, labels)
	}
	checks := []struct {
		what   string
		name   string
		labels map[string]string
		want   float64
	}{
		{"requests", "request_total", out, 35},
		{"200 responses", "response_total", with(map[string]string{"status_code": "200", "classification": "success"}), 20},
		{"404 responses", "response_total", with(map[string]string{"status_code": "404", "classification": "success"}), 5},
		{"503 responses", "response_total", with(map[string]string{"status_code": "503", "classification": "failure"}), 10},
		{"latency samples", "response_latency_ms", out, 35},
		{"responses with dst labels", "response_total", with(map[string]string{"dst_service": "web", "dst_namespace": "test"}), 35},
		{"connections opened", "tcp_open_total", tcpOut, 1},
		{"connections closed", "tcp_close_total", tcpOut, 1},
		{"bytes read from the client", "tcp_read_bytes_total", tcpOut, float64(written.Load())},
		{"bytes written to the client", "tcp_write_bytes_total", tcpOut, float64(read.Load())},
	}
	for _, c := range checks {
		if got := delta(c.name, c.labels); got != c.want {
			t.Errorf("client proxy %s: %s%v rose by %v, want %v", c.what, c.name, c.labels, got, c.want)
		}
	}
	if got := delta("tcp_open_connections", tcpOut); got != 0 {
		t.Errorf("client proxy tcp_open_connections%v changed by %v once the client closed, want 0", tcpOut, got)
	}

	// The server proxies saw the same requests inbound. Inbound requests
	// are not resolved: their authority is "unknown", never the Host.
	var inbound503, inboundAll float64
	for i, h := range s.servers {
		m := scrape(t, h)
		in := map[string]string{"direction": "inbound", "authority": "unknown", "target_addr": addrPort(h.IP, portHTTP).String()}
		inboundAll += m.sum("response_total", in) - serversBefore[i].sum("response_total", in)
		in["status_code"] = "503"
		inbound503 += m.sum("response_total", in) - serversBefore[i].sum("response_total", in)
	}
	if inboundAll != 35 || inbound503 != 10 {
		t.Errorf("server proxies counted %v inbound responses (%v of them 503), want 35 (10)", inboundAll, inbound503)
	}
}

func TestMetricsCountGRPCStatus(t *testing.T) {
	s := getShared(t)
	client, _ := grpcConn(t, s.client, addrPort(s.vip, portGRPC).String())
	before := scrape(t, s.client)
	ctx := context.Background()
	for i := range 20 {
		req := &testpb.SimpleRequest{}
		if i < 7 {
			req.ResponseStatus = &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no"}
		} else if i < 10 {
			req.ResponseStatus = &testpb.EchoStatus{Code: int32(codes.Unavailable), Message: "down"}
		}
		client.UnaryCall(ctx, req)
	}
	after := scrape(t, s.client)
	out := map[string]string{"direction": "outbound", "authority": addrPort(s.vip, portGRPC).String()}
	for _, c := range []struct {
		grpc, class string
		want        float64
	}{{"0", "success", 10}, {"5", "success", 7}, {"14", "failure", 3}} {
		l := map[string]string{"grpc_status": c.grpc, "classification": c.class}
		for k, v := range out {
			l[k] = v
		}
		if got := after.sum("response_total", l) - before.sum("response_total", l); got != c.want {
			t.Errorf("response_total%v rose by %v, want %v", l, got, c.want)
		}
	}
}
