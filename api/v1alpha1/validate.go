package v1alpha1

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// FieldError is a problem with one field of a resource.
type FieldError struct {
	// Field is the path of the field, "spec.ports[0].containerPort".
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func fieldError(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Validate checks what a Workload means on its own: a name, port numbers
// and unique port names, probe ports that exist, IP addresses. The errors
// are *FieldError values, joined. What needs other objects or the machine
// (does the command exist?) is checked by whoever runs the workload.
func (w *Workload) Validate() error {
	var errs []error
	if w.Name == "" {
		errs = append(errs, fieldError("metadata.name", "is required"))
	}
	s := &w.Spec
	if s.Replicas != nil && *s.Replicas < 0 {
		errs = append(errs, fieldError("spec.replicas", "must not be negative"))
	}
	for i, e := range s.Env {
		if e.Name == "" {
			errs = append(errs, fieldError(fmt.Sprintf("spec.env[%d].name", i), "is required"))
		}
	}
	named := map[string]bool{}
	for i, p := range s.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			errs = append(errs, fieldError(field+".containerPort", "%d is not a port number (1-65535)", p.ContainerPort))
		}
		if p.Protocol != "" && p.Protocol != "TCP" && p.Protocol != "UDP" {
			errs = append(errs, fieldError(field+".protocol", "%q is not TCP or UDP", p.Protocol))
		}
		if p.Name != "" {
			if named[p.Name] {
				errs = append(errs, fieldError(field+".name", "port name %q is used twice", p.Name))
			}
			named[p.Name] = true
		}
	}
	if p := s.ReadinessProbe; p != nil {
		switch {
		case (p.HTTPGet == nil) == (p.TCPSocket == nil):
			errs = append(errs, fieldError("spec.readinessProbe", "needs exactly one of httpGet and tcpSocket"))
		case p.HTTPGet != nil:
			errs = append(errs, probePortError("spec.readinessProbe.httpGet.port", p.HTTPGet.Port.IntValue(), p.HTTPGet.Port.StrVal, named))
		default:
			errs = append(errs, probePortError("spec.readinessProbe.tcpSocket.port", p.TCPSocket.Port.IntValue(), p.TCPSocket.Port.StrVal, named))
		}
	}
	for i, a := range s.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, fieldError(fmt.Sprintf("spec.addresses[%d]", i), "%q is not an IP address", a))
		}
	}
	for i, a := range s.NotReadyAddresses {
		if !slices.Contains(s.Addresses, a) {
			errs = append(errs, fieldError(fmt.Sprintf("spec.notReadyAddresses[%d]", i), "%q is not one of spec.addresses", a))
		}
	}
	return errors.Join(errs...)
}

func probePortError(field string, number int, name string, named map[string]bool) error {
	if name != "" {
		if !named[name] {
			return fieldError(field, "no port named %q in spec.ports", name)
		}
		return nil
	}
	if number < 1 || number > 65535 {
		return fieldError(field, "%d is not a port number (1-65535)", number)
	}
	return nil
}
