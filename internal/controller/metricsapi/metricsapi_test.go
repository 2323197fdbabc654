package metricsapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBadRequestsNameTheParameter(t *testing.T) {
	api := httptest.NewServer(NewHandler(Config{PrometheusURL: "http://" + freeAddr(t)}))
	t.Cleanup(api.Close)
	tests := []struct {
		path      string
		wantParam string
	}{
		{"/api/v1/stat?since=forever", "since"},
		{"/api/v1/stat?since=0s", "since"},
		{"/api/v1/stat?kind=replicaset", "kind"},
		{"/api/v1/stat?namespace=a%22b", "namespace"},
		{"/api/v1/edges?since=1x", "since"},
		{"/api/v1/routes", "workload"},
		{"/api/v1/routes?workload=a&service=b", "service"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, msg := get(t, api.URL+tt.path)
			if status != http.StatusBadRequest || !strings.Contains(msg, `parameter "`+tt.wantParam+`"`) {
				t.Errorf("got %d %q, want 400 naming %q", status, msg, tt.wantParam)
			}
		})
	}
}

func TestUnreachablePrometheusIs503(t *testing.T) {
	api := httptest.NewServer(NewHandler(Config{PrometheusURL: "http://" + freeAddr(t)}))
	t.Cleanup(api.Close)
	for _, path := range []string{"/api/v1/stat", "/api/v1/edges", "/api/v1/routes?workload=web", "/api/v1/timeseries?workload=web"} {
		status, msg := get(t, api.URL+path)
		if status != http.StatusServiceUnavailable || !strings.Contains(msg, "cannot reach Prometheus") {
			t.Errorf("%s: got %d %q, want 503 saying Prometheus is unreachable", path, status, msg)
		}
	}
}

func TestMisconfiguredHandlerSaysWhy(t *testing.T) {
	api := httptest.NewServer(NewHandler(Config{}))
	t.Cleanup(api.Close)
	status, msg := get(t, api.URL+"/api/v1/stat")
	if status != http.StatusInternalServerError || !strings.Contains(msg, "PrometheusURL") {
		t.Errorf("got %d %q, want 500 naming PrometheusURL", status, msg)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e errorBody
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", url, err)
	}
	return resp.StatusCode, e.Error
}

func TestSelectorEscapesValues(t *testing.T) {
	got := selector("response_total", eq("direction", "inbound"), ne("workload", `we"b\`), eq("namespace", "a\nb"))
	want := `response_total{direction="inbound",workload!="we\"b\\",namespace="a\nb"}`
	if got != want {
		t.Errorf("selector = %s, want %s", got, want)
	}
}

func TestMatchClientID(t *testing.T) {
	ids := []string{
		"spiffe://td/ns/demo/sa/web",
		"spiffe://td/ns/demo/sa/vote",
		"spiffe://td/ns/other/sa/web",
		"not-a-spiffe-id",
	}
	tests := []struct {
		name               string
		ids                []string
		namespace, account string
		want               string
	}{
		{"account and namespace match", ids, "demo", "web", "spiffe://td/ns/demo/sa/web"},
		{"namespace decides between equal accounts", ids, "other", "web", "spiffe://td/ns/other/sa/web"},
		{"unknown account, one identity in the namespace", ids, "other", "", "spiffe://td/ns/other/sa/web"},
		{"unknown account, ambiguous namespace", ids, "demo", "", ""},
		{"no identity for this caller", ids, "demo", "emoji", ""},
		{"callee saw no identities", nil, "demo", "web", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchClientID(tt.ids, tt.namespace, tt.account); got != tt.want {
				t.Errorf("matchClientID = %q, want %q", got, tt.want)
			}
		})
	}
}
