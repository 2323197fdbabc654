// Package redact hides what must not leave the proxy for a person to read:
// the values of header fields that carry credentials (Authorization,
// Cookie, ...) in tap events and mirroring's mismatch examples, and, in
// tap's opt-in body prefixes, the values of chosen JSON fields and the
// matches of chosen patterns. It does not decide what is shown, only what
// is hidden.
package redact

import "strings"

// Redacted replaces the value of a hidden field.
const Redacted = "[REDACTED]"

// hidden are the fields whose values are credentials, lower case.
var hidden = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"set-cookie":          true,
}

// Hidden reports whether the value of the header field name (any case)
// is hidden.
func Hidden(name string) bool {
	return hidden[strings.ToLower(name)]
}

// Value returns value, or Redacted when the field name is hidden.
func Value(name, value string) string {
	if Hidden(name) {
		return Redacted
	}
	return value
}

// Headers hides the credential fields and, on top of them, fields a
// caller names (a tap session's redact_headers). The zero value hides the
// credential fields only.
type Headers struct {
	extra map[string]bool // lower case
}

// NewHeaders hides the credential fields and the fields named in extra
// (any case).
func NewHeaders(extra []string) Headers {
	if len(extra) == 0 {
		return Headers{}
	}
	h := Headers{extra: make(map[string]bool, len(extra))}
	for _, name := range extra {
		h.extra[strings.ToLower(name)] = true
	}
	return h
}

// Value returns value, or Redacted when the field name is hidden.
func (h Headers) Value(name, value string) string {
	if Hidden(name) || h.extra[strings.ToLower(name)] {
		return Redacted
	}
	return value
}
