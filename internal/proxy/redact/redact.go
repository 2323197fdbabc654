// Package redact hides the values of header fields that carry
// credentials (Authorization, Cookie, ...) before a header leaves the
// proxy for a person to read: tap events and mirroring's mismatch
// examples. It does not decide what is shown, only what is hidden.
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
