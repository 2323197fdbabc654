package route

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// faultHeader tells the local application that the proxy answered with an
// injected fault (outbound, the application may always know why; see
// proxyerror.MayKnowWhy).
const faultHeader = "skein-proxy-error"

// injectFault delays the request (DelayPercent of the time) and then
// aborts it (AbortPercent): a non-nil response is the abort's answer. A
// fault without a percentage injects nothing.
func (r *router) injectFault(ctx context.Context, req *stack.Request, f *routes.Fault) (*stack.Response, error) {
	if f.Delay > 0 && r.percent(f.DelayPercent) {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if (f.AbortHTTP == 0 && f.AbortGRPC == 0) || !r.percent(f.AbortPercent) {
		return nil, nil
	}
	return abort(req, f), nil
}

// abort is an injected failure: for a gRPC request a trailers-only answer
// with the fault's gRPC status (or the one gRPC maps its HTTP status to),
// else the fault's HTTP status (or the one its gRPC status maps to).
func abort(req *stack.Request, f *routes.Fault) *stack.Response {
	var h stack.Header
	h.Add(faultHeader, "fault injected")
	if req.IsGRPC() {
		code := f.AbortGRPC
		if code == 0 {
			code = grpcCodeOfHTTP(f.AbortHTTP)
		}
		h.Add("content-type", "application/grpc")
		h.Add("grpc-status", strconv.Itoa(code))
		h.Add("grpc-message", "fault injected")
		return &stack.Response{Status: http.StatusOK, Header: h, Body: stack.NoBody}
	}
	status := f.AbortHTTP
	if status == 0 {
		status = httpStatusOfGRPC(f.AbortGRPC)
	}
	text := http.StatusText(status)
	h.Add("content-type", "text/plain; charset=utf-8")
	h.Add("x-content-type-options", "nosniff")
	return &stack.Response{Status: status, Header: h, Body: stack.BytesBody([]byte(text+"\n"), nil)}
}

// grpcCodeOfHTTP is the gRPC status a client reads from an HTTP status
// (gRPC's doc/http-grpc-status-mapping.md).
func grpcCodeOfHTTP(status int) int {
	switch status {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// httpStatusOfGRPC is the HTTP status of a gRPC status as gRPC gateways
// map it.
func httpStatusOfGRPC(code int) int {
	switch code {
	case 1: // CANCELLED
		return 499
	case 3, 9, 11: // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
		return 400
	case 4: // DEADLINE_EXCEEDED
		return 504
	case 5: // NOT_FOUND
		return 404
	case 6, 10: // ALREADY_EXISTS, ABORTED
		return 409
	case 7: // PERMISSION_DENIED
		return 403
	case 8: // RESOURCE_EXHAUSTED
		return 429
	case 12: // UNIMPLEMENTED
		return 501
	case 14: // UNAVAILABLE
		return 503
	case 16: // UNAUTHENTICATED
		return 401
	}
	return 500
}

// modifyHeader applies a Gateway API header filter: names compared
// case-insensitively; Remove, then Set (replacing every value), then Add
// (appending a field).
func modifyHeader(h *stack.Header, m *routes.HeaderModifier) {
	for _, name := range m.Remove {
		h.Del(strings.ToLower(name))
	}
	for _, f := range m.Set {
		h.Set(strings.ToLower(f.Name), f.Value)
	}
	for _, f := range m.Add {
		h.Add(strings.ToLower(f.Name), f.Value)
	}
}

// rewrite applies a URL rewrite: the Host (:authority) the backend sees,
// and the path, whole or the part the rule's PathPrefix matched; the query
// stays.
func rewrite(req *stack.Request, rw *routes.Rewrite, m *routes.Match) {
	if rw.Hostname != "" {
		req.Authority = rw.Hostname
	}
	if rw.Path != nil {
		req.Path = rewritePath(req.Path, rw.Path, m)
	}
}

// rewritePath is path (query included) with a PathRewrite applied.
func rewritePath(path string, pr *routes.PathRewrite, m *routes.Match) string {
	p, query, hasQuery := strings.Cut(path, "?")
	switch {
	case pr.IsPrefix:
		p = replacePrefix(p, matchedPrefix(m), pr.Prefix)
	case pr.Full != "":
		p = pr.Full
	default:
		return path
	}
	if hasQuery {
		return p + "?" + query
	}
	return p
}

// matchedPrefix is the PathPrefix value of the match that chose the rule;
// a rule that matched without a path match matched the prefix "/".
func matchedPrefix(m *routes.Match) string {
	if m != nil && m.Path != nil && m.Path.Type == routes.PathPrefix {
		return m.Path.Value
	}
	return "/"
}

// replacePrefix replaces the segments of path that prefix matched with
// replacement, as the Gateway API's ReplacePrefixMatch does: "/foo" →
// "/xyz" turns "/foo/bar" into "/xyz/bar"; "/foo" → "" or "/" turns it
// into "/bar"; trailing slashes of prefix and replacement do not count.
func replacePrefix(path, prefix, replacement string) string {
	prefix = strings.TrimSuffix(prefix, "/")
	rest := path
	if routes.HasPathPrefix(path, prefix) {
		rest = path[len(prefix):]
	}
	out := strings.TrimSuffix(replacement, "/") + rest
	if out == "" || out[0] != '/' {
		out = "/" + out
	}
	return out
}

// redirect answers a request with a Gateway API RequestRedirect: each part
// of the Location the filter does not set is the request's own. The port
// is the filter's, else the well-known port of a scheme the filter sets,
// else the destination's port (the GAMMA "listener"), and is left out
// when it is the scheme's default.
func redirect(req *stack.Request, rd *routes.Redirect, m *routes.Match, destPort uint16) *stack.Response {
	scheme := req.Scheme
	if scheme == "" {
		scheme = "http"
	}
	host, reqPort := splitAuthority(req.Authority)
	port := destPort
	if port == 0 {
		port = reqPort
	}
	if port == 0 && req.Conn != nil && req.Conn.OrigDst.IsValid() {
		port = req.Conn.OrigDst.Port()
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
		port = wellKnownPort(scheme, port)
	}
	if rd.Port != 0 {
		port = rd.Port
	}
	if rd.Hostname != "" {
		host = rd.Hostname
	}
	path := req.Path
	if rd.Path != nil {
		path = rewritePath(path, rd.Path, m)
	}
	hostPort := host
	if port != 0 && !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) {
		hostPort = net.JoinHostPort(host, strconv.Itoa(int(port)))
	} else if strings.Contains(host, ":") {
		hostPort = "[" + host + "]" // an IPv6 literal
	}
	status := rd.StatusCode
	if status == 0 {
		status = http.StatusFound
	}
	var h stack.Header
	h.Add("location", scheme+"://"+hostPort+path)
	return &stack.Response{Status: status, Header: h, Body: stack.NoBody}
}

// wellKnownPort is the port of scheme, or otherwise when it has none.
func wellKnownPort(scheme string, otherwise uint16) uint16 {
	switch scheme {
	case "http":
		return 80
	case "https":
		return 443
	}
	return otherwise
}

// splitAuthority splits an authority into its host (brackets of an IPv6
// literal removed) and port (0 when none or not a number).
func splitAuthority(authority string) (string, uint16) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return strings.Trim(authority, "[]"), 0
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return host, 0
	}
	return host, uint16(n)
}
