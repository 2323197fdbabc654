// Package tap holds what the controller's tap API says to its clients
// (`skein tap`, `skein top`, the dashboard): the request a client makes and
// the events it streams back as JSON lines. The proxy side of tap speaks
// proto/tap; the controller converts.
package tap

import "time"

// APIPath is the controller's tap route on its metrics API. A GET with the
// query parameters of Request streams one JSON Event per line
// (application/x-ndjson) until the client goes away.
const APIPath = "/api/v1/tap"

// Request selects what to tap. Resource is required.
type Request struct {
	// Namespace of Resource and To.
	Namespace string `json:"namespace"`
	// Resource is KIND/NAME, KIND one of namespace (ns), workload
	// (deploy, deployment, statefulset, sts, daemonset, ds, wl),
	// pod (po), service (svc): whose proxies are tapped.
	Resource string `json:"resource"`
	// To narrows to requests to this resource (same forms), outbound.
	To     string `json:"to,omitempty"`
	Method string `json:"method,omitempty"`
	// Path is a prefix of the request path.
	Path      string `json:"path,omitempty"`
	Authority string `json:"authority,omitempty"`
	Route     string `json:"route,omitempty"`
	// MaxRPS is the events a second each proxy may send (default 100).
	MaxRPS int `json:"maxRps,omitempty"`
}

// Query parameter names of Request, as the API reads them.
const (
	ParamNamespace = "namespace"
	ParamResource  = "resource"
	ParamTo        = "to"
	ParamMethod    = "method"
	ParamPath      = "path"
	ParamAuthority = "authority"
	ParamRoute     = "route"
	ParamMaxRPS    = "maxRps"
)

// Event kinds.
const (
	KindRequest  = "request"
	KindResponse = "response"
	KindEnd      = "end"
	// KindDropped reports events a proxy dropped (over its cap or for a
	// slow reader), with Dropped set and nothing else but Proxy.
	KindDropped = "dropped"
	// KindError reports a proxy that could not be tapped (Error set).
	KindError = "error"
)

// Event is one line of the tap API's answer.
type Event struct {
	Kind string    `json:"kind"`
	Time time.Time `json:"time"`
	// Proxy is the pod whose proxy saw the request ("namespace/pod").
	Proxy string `json:"proxy"`
	// Stream identifies the request within Proxy: the request, response
	// and end events of one request share it.
	Stream    uint64 `json:"stream"`
	Direction string `json:"direction,omitempty"`
	Source    Peer   `json:"source"`
	Dest      Peer   `json:"destination"`

	Method    string   `json:"method,omitempty"`
	Scheme    string   `json:"scheme,omitempty"`
	Authority string   `json:"authority,omitempty"`
	Path      string   `json:"path,omitempty"`
	Route     string   `json:"route,omitempty"`
	Headers   []Header `json:"headers,omitempty"`

	Status     int  `json:"status,omitempty"`
	GRPCStatus *int `json:"grpcStatus,omitempty"`
	// LatencyMs (response) and DurationMs (end) are since the request
	// started.
	LatencyMs     float64 `json:"latencyMs,omitempty"`
	DurationMs    float64 `json:"durationMs,omitempty"`
	RequestBytes  uint64  `json:"requestBytes,omitempty"`
	ResponseBytes uint64  `json:"responseBytes,omitempty"`
	Error         string  `json:"error,omitempty"`

	// Body is the captured body prefix (request body on a request event,
	// response body on an end event), only for workloads that opted in.
	Body          string `json:"body,omitempty"`
	BodyTruncated bool   `json:"bodyTruncated,omitempty"`

	Dropped uint64 `json:"dropped,omitempty"`
}

// Peer is one end of a request.
type Peer struct {
	Address   string `json:"address,omitempty"`
	Identity  string `json:"identity,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Workload  string `json:"workload,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Service   string `json:"service,omitempty"`
}

// Header is a request or response header; Value is Redacted for headers
// in the redaction list.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Redacted stands in for a redacted value.
const Redacted = "[REDACTED]"
