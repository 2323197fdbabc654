package tapapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/skeinmesh/skein/internal/tap"
)

// Bounds of what a tap request may say.
const (
	// MaxEventsPerSecond is the most events a second a client may ask of
	// each proxy (the proxy caps it there too).
	MaxEventsPerSecond = 1000
	maxParamLen        = 1024
	maxNameLen         = 253
)

// paramError is a bad query parameter: a 400 that names it.
type paramError struct {
	param, problem string
}

func (e *paramError) Error() string { return fmt.Sprintf("parameter %s: %s", e.param, e.problem) }

func badParam(param, format string, args ...any) error {
	return &paramError{param: param, problem: fmt.Sprintf(format, args...)}
}

// ParseRequest reads a tap.Request from the query parameters tap.Param*,
// refusing what is malformed, naming the parameter.
func ParseRequest(q url.Values) (tap.Request, error) {
	for name, values := range q {
		if len(values) > 1 {
			return tap.Request{}, badParam(name, "given %d times", len(values))
		}
		if len(values[0]) > maxParamLen {
			return tap.Request{}, badParam(name, "longer than %d bytes", maxParamLen)
		}
	}
	req := tap.Request{
		Namespace: q.Get(tap.ParamNamespace),
		Resource:  q.Get(tap.ParamResource),
		To:        q.Get(tap.ParamTo),
		Method:    q.Get(tap.ParamMethod),
		Path:      q.Get(tap.ParamPath),
		Authority: q.Get(tap.ParamAuthority),
		Route:     q.Get(tap.ParamRoute),
	}
	if req.Namespace != "" && !isDNSLabel(req.Namespace) {
		return tap.Request{}, badParam(tap.ParamNamespace, "%q is not a namespace name", req.Namespace)
	}
	if req.Resource == "" {
		return tap.Request{}, badParam(tap.ParamResource, "required (KIND/NAME, e.g. deploy/web)")
	}
	res, err := ParseResource(req.Resource)
	if err != nil {
		return tap.Request{}, badParam(tap.ParamResource, "%v", err)
	}
	if req.Namespace == "" && res.Kind != KindNamespace {
		return tap.Request{}, badParam(tap.ParamNamespace, "required for %s", req.Resource)
	}
	if req.To != "" {
		if _, err := ParseResource(req.To); err != nil {
			return tap.Request{}, badParam(tap.ParamTo, "%v", err)
		}
	}
	if req.Method != "" && !isToken(req.Method) {
		return tap.Request{}, badParam(tap.ParamMethod, "%q is not an HTTP method", req.Method)
	}
	if req.Path != "" && !strings.HasPrefix(req.Path, "/") {
		return tap.Request{}, badParam(tap.ParamPath, "%q does not start with /", req.Path)
	}
	if len(req.Authority) > maxNameLen || strings.ContainsAny(req.Authority, " /\t") {
		return tap.Request{}, badParam(tap.ParamAuthority, "%q is not an authority (host[:port])", req.Authority)
	}
	if len(req.Route) > 2*maxNameLen+1 {
		return tap.Request{}, badParam(tap.ParamRoute, "longer than %d bytes", 2*maxNameLen+1)
	}
	if s := q.Get(tap.ParamMaxRPS); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxEventsPerSecond {
			return tap.Request{}, badParam(tap.ParamMaxRPS, "%q is not a number from 1 to %d", s, MaxEventsPerSecond)
		}
		req.MaxRPS = n
	}
	return req, nil
}

// Resource kinds a tap request names.
const (
	KindNamespace = "namespace"
	KindWorkload  = "workload"
	KindPod       = "pod"
	KindService   = "service"
)

var kindAliases = map[string]string{
	"namespace": KindNamespace, "ns": KindNamespace,
	"workload": KindWorkload, "wl": KindWorkload, "deploy": KindWorkload, "deployment": KindWorkload,
	"statefulset": KindWorkload, "sts": KindWorkload, "daemonset": KindWorkload, "ds": KindWorkload,
	"pod": KindPod, "po": KindPod,
	"service": KindService, "svc": KindService,
}

// Resource is a parsed KIND/NAME.
type Resource struct {
	Kind, Name string
}

func (r Resource) String() string { return r.Kind + "/" + r.Name }

// ParseResource reads KIND/NAME (kinds as tap.Request.Resource lists them,
// plural forms too).
func ParseResource(s string) (Resource, error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || name == "" {
		return Resource{}, fmt.Errorf("%q is not KIND/NAME (e.g. deploy/web, ns/demo, svc/web, po/web-0)", s)
	}
	k, known := kindAliases[strings.ToLower(kind)]
	if !known {
		k, known = kindAliases[strings.TrimSuffix(strings.ToLower(kind), "s")]
	}
	if !known {
		return Resource{}, fmt.Errorf("unknown kind %q (want namespace, workload, deploy, statefulset, daemonset, pod or service)", kind)
	}
	if !isDNSName(name) {
		return Resource{}, fmt.Errorf("%q is not a resource name", name)
	}
	return Resource{Kind: k, Name: name}, nil
}

// isDNSLabel: lower-case letters, digits and '-', 1-63 long.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// isDNSName: DNS labels joined by '.', at most 253 long.
func isDNSName(s string) bool {
	if len(s) > maxNameLen {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// isToken: an HTTP token (RFC 9110), at most 32 bytes.
func isToken(s string) bool {
	if len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
