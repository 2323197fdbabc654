package inject

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skeinmesh/skein/internal/netfilter"
)

// The annotations the injector reads (on pods and namespaces) and writes.
const (
	AnnotationInject = "skein.io/inject"
	InjectEnabled    = "enabled"
	InjectDisabled   = "disabled"

	AnnotationInjected     = "skein.io/injected"
	AnnotationProxyVersion = "skein.io/proxy-version"

	AnnotationSkipInboundPorts  = "skein.io/skip-inbound-ports"
	AnnotationSkipOutboundPorts = "skein.io/skip-outbound-ports"
	AnnotationOpaquePorts       = "skein.io/opaque-ports"
	AnnotationProxyLogLevel     = "skein.io/proxy-log-level"

	AnnotationProxyCPURequest    = "skein.io/proxy-cpu-request"
	AnnotationProxyCPULimit      = "skein.io/proxy-cpu-limit"
	AnnotationProxyMemoryRequest = "skein.io/proxy-memory-request"
	AnnotationProxyMemoryLimit   = "skein.io/proxy-memory-limit"
)

// settings are the per-pod proxy settings read from annotations.
type settings struct {
	skipInboundPorts  string
	skipInbound       []netfilter.PortRange // skipInboundPorts parsed
	skipOutboundPorts string
	opaquePorts       string
	// inboundPorts are the application's ports (from the pod's
	// containers, not an annotation).
	inboundPorts string
	// probeTCPPorts are the application's ports whose TCP probes the
	// proxy runs (rewriteTCPProbes).
	probeTCPPorts string
	logLevel      string
	resources     corev1.ResourceRequirements
}

// readAnnotations checks each annotation here, so that a pod is refused
// at admission rather than crash-looping later; errors name the annotation.
func readAnnotations(a map[string]string) (settings, error) {
	s := settings{
		skipInboundPorts:  strings.TrimSpace(a[AnnotationSkipInboundPorts]),
		skipOutboundPorts: strings.TrimSpace(a[AnnotationSkipOutboundPorts]),
		opaquePorts:       strings.TrimSpace(a[AnnotationOpaquePorts]),
		logLevel:          strings.TrimSpace(a[AnnotationProxyLogLevel]),
	}
	// The same parser as skein-init's, so what passes here runs there.
	var err error
	if s.skipInbound, err = netfilter.ParsePortRanges(s.skipInboundPorts); err != nil {
		return s, fmt.Errorf("annotation %s: %w", AnnotationSkipInboundPorts, err)
	}
	if _, err := netfilter.ParsePortRanges(s.skipOutboundPorts); err != nil {
		return s, fmt.Errorf("annotation %s: %w", AnnotationSkipOutboundPorts, err)
	}
	if err := checkPorts(s.opaquePorts); err != nil {
		return s, fmt.Errorf("annotation %s: %w", AnnotationOpaquePorts, err)
	}
	switch s.logLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return s, fmt.Errorf("annotation %s: %q is not debug, info, warn or error", AnnotationProxyLogLevel, s.logLevel)
	}
	for _, r := range []struct {
		annotation string
		list       *corev1.ResourceList
		name       corev1.ResourceName
	}{
		{AnnotationProxyCPURequest, &s.resources.Requests, corev1.ResourceCPU},
		{AnnotationProxyMemoryRequest, &s.resources.Requests, corev1.ResourceMemory},
		{AnnotationProxyCPULimit, &s.resources.Limits, corev1.ResourceCPU},
		{AnnotationProxyMemoryLimit, &s.resources.Limits, corev1.ResourceMemory},
	} {
		v, ok := a[r.annotation]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(strings.TrimSpace(v))
		if err != nil {
			return s, fmt.Errorf("annotation %s: %q: %w", r.annotation, v, err)
		}
		if *r.list == nil {
			*r.list = corev1.ResourceList{}
		}
		(*r.list)[r.name] = q
	}
	return s, nil
}

// checkPorts accepts a list of single ports, "3306,25", as skein-proxy's
// -opaque-ports does.
func checkPorts(list string) error {
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if p, err := strconv.ParseUint(f, 10, 16); err != nil || p == 0 {
			return fmt.Errorf("%q is not a port", f)
		}
	}
	return nil
}
