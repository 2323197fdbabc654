package tapapi

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/skeinmesh/skein/internal/model"
)

// Model is what the tap API reads of the mesh (*model.Model).
type Model interface {
	TrustDomain() string
	Instances(namespace string) []model.Instance
	ServiceInstances(namespace, name string) ([]model.Instance, bool)
	Service(namespace, name string) (model.Service, bool)
	NamespaceAnnotations(name string) map[string]string
	InstanceAt(ip netip.Addr) (model.Instance, bool)
}

// Annotations a namespace, a pod or a Workload opts in to tapped bodies
// and sets their redaction with. A workload's value of body-bytes wins
// over its namespace's; the redaction lists of both apply.
const (
	// BodyBytesAnnotation: how many bytes of each request and response
	// body tap may show, 1 to MaxBodyBytes ("0" opts a workload out of
	// its namespace's opt-in). Without it no body byte is captured.
	BodyBytesAnnotation = "skein.io/tap-body-bytes"
	// RedactJSONFieldsAnnotation: JSON object fields whose values are
	// redacted in captured bodies, comma-separated.
	RedactJSONFieldsAnnotation = "skein.io/tap-redact-json-fields"
	// RedactPatternsAnnotation: RE2 patterns redacted in captured bodies,
	// one a line.
	RedactPatternsAnnotation = "skein.io/tap-redact-patterns"
	// RedactHeadersAnnotation: header names whose values tap redacts, on
	// top of Authorization, Proxy-Authorization, Cookie and Set-Cookie,
	// comma-separated. Applies whether or not bodies are on.
	RedactHeadersAnnotation = "skein.io/tap-redact-headers"

	// MaxBodyBytes is the largest body prefix an annotation can ask for
	// (the proxy caps it there too).
	MaxBodyBytes = 64 << 10
	// maxRedactions bounds each redaction list an annotation may give.
	maxRedactions = 64
)

// Target is one proxy to tap.
type Target struct {
	Namespace, Pod, Workload string
	// Addr is the proxy's admin address (the pod's IP, the admin port).
	Addr netip.AddrPort
	// Identity is the SPIFFE ID the proxy must present.
	Identity string
	Bodies   BodyOptions
	// OptInError says why the annotations of the workload or its
	// namespace were not used (bodies then stay off).
	OptInError string
}

// Name is "namespace/pod".
func (t Target) Name() string { return t.Namespace + "/" + t.Pod }

// BodyOptions is what a workload's annotations allow tap to show.
type BodyOptions struct {
	BodyBytes        uint32
	RedactJSONFields []string
	RedactPatterns   []string
	RedactHeaders    []string
}

// notFoundError is a resource the model does not know: a 404.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// resolveTargets lists the meshed instances of res in namespace, with
// their proxies' addresses, identities and body opt-ins.
func resolveTargets(m Model, namespace string, res Resource, adminPort uint16) ([]Target, error) {
	instances, err := instancesOf(m, namespace, res)
	if err != nil {
		return nil, err
	}
	var targets []Target
	for _, in := range instances {
		if !in.Meshed || !in.IP.IsValid() {
			continue
		}
		t := Target{
			Namespace: in.Namespace, Pod: in.Name, Workload: in.Workload,
			Addr:     netip.AddrPortFrom(in.IP, adminPort),
			Identity: model.Identity(m.TrustDomain(), in.Namespace, in.ServiceAccount),
		}
		bodies, err := bodyOptions(m.NamespaceAnnotations(in.Namespace), in.Annotations)
		if err != nil {
			t.OptInError = err.Error()
			// Fail closed: no bodies, but the headers the annotations
			// name stay redacted.
			bodies = BodyOptions{RedactHeaders: bodies.RedactHeaders}
		}
		t.Bodies = bodies
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		if len(instances) == 0 {
			return nil, &notFoundError{fmt.Sprintf("%s in namespace %s has no running instances", res, namespace)}
		}
		return nil, &notFoundError{fmt.Sprintf("%s in namespace %s has no meshed instances with an address to tap", res, namespace)}
	}
	return targets, nil
}

// instancesOf lists the instances res names.
func instancesOf(m Model, namespace string, res Resource) ([]model.Instance, error) {
	switch res.Kind {
	case KindNamespace:
		return m.Instances(res.Name), nil
	case KindService:
		instances, ok := m.ServiceInstances(namespace, res.Name)
		if !ok {
			return nil, &notFoundError{fmt.Sprintf("no service %s in namespace %s", res.Name, namespace)}
		}
		return instances, nil
	}
	var out []model.Instance
	for _, in := range m.Instances(namespace) {
		if (res.Kind == KindWorkload && in.Workload == res.Name) || (res.Kind == KindPod && in.Name == res.Name) {
			out = append(out, in)
		}
	}
	if len(out) == 0 {
		return nil, &notFoundError{fmt.Sprintf("no %s %s in namespace %s", res.Kind, res.Name, namespace)}
	}
	return out, nil
}

// peerAddresses are the IPs requests to res go to: its instances' and, for
// a service, its cluster IPs.
func peerAddresses(m Model, namespace string, res Resource) ([]string, error) {
	instances, err := instancesOf(m, namespace, res)
	if err != nil {
		return nil, err
	}
	var out []string
	if res.Kind == KindService {
		if svc, ok := m.Service(namespace, res.Name); ok {
			for _, ip := range svc.ClusterIPs {
				out = append(out, ip.String())
			}
		}
	}
	for _, in := range instances {
		if in.IP.IsValid() {
			out = append(out, in.IP.String())
		}
	}
	if len(out) == 0 {
		return nil, &notFoundError{fmt.Sprintf("%s in namespace %s has no address", res, namespace)}
	}
	return out, nil
}

// bodyOptions merges the tap annotations of a namespace and a workload.
// An annotation that does not parse turns bodies off (the error says
// which); header redactions that parse are kept either way.
func bodyOptions(nsAnn, wlAnn map[string]string) (BodyOptions, error) {
	var o BodyOptions
	var errs []string
	for _, ann := range []map[string]string{nsAnn, wlAnn} {
		o.RedactHeaders = append(o.RedactHeaders, splitList(ann[RedactHeadersAnnotation], ",")...)
	}
	if len(o.RedactHeaders) > 2*maxRedactions {
		o.RedactHeaders = nil
		errs = append(errs, fmt.Sprintf("%s lists more than %d headers", RedactHeadersAnnotation, maxRedactions))
	}
	bytesText, where := nsAnn[BodyBytesAnnotation], "namespace"
	if v, ok := wlAnn[BodyBytesAnnotation]; ok {
		bytesText, where = v, "workload"
	}
	if bytesText == "" {
		return o, joinErrs(errs)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(bytesText), 10, 32)
	if err != nil || n > MaxBodyBytes {
		errs = append(errs, fmt.Sprintf("%s annotation %s=%q is not a byte count from 0 to %d", where, BodyBytesAnnotation, bytesText, MaxBodyBytes))
		return o, joinErrs(errs)
	}
	o.BodyBytes = uint32(n)
	for _, ann := range []map[string]string{nsAnn, wlAnn} {
		o.RedactJSONFields = append(o.RedactJSONFields, splitList(ann[RedactJSONFieldsAnnotation], ",")...)
		o.RedactPatterns = append(o.RedactPatterns, splitList(ann[RedactPatternsAnnotation], "\n")...)
	}
	if len(o.RedactJSONFields) > 2*maxRedactions || len(o.RedactPatterns) > 2*maxRedactions {
		errs = append(errs, fmt.Sprintf("more than %d redactions in %s or %s", maxRedactions, RedactJSONFieldsAnnotation, RedactPatternsAnnotation))
	}
	for _, p := range o.RedactPatterns {
		if _, err := regexp.Compile(p); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %q is not an RE2 pattern", RedactPatternsAnnotation, p))
		}
	}
	return o, joinErrs(errs)
}

func splitList(s, sep string) []string {
	var out []string
	for part := range strings.SplitSeq(s, sep) {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("tap annotations ignored, bodies off: %s", strings.Join(errs, "; "))
}
