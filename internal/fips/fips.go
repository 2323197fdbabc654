// Package fips says which FIPS 140-3 mode a Skein binary runs in.
//
// The mode is Go's: a binary built with GOFIPS140 (make build-fips) uses a
// frozen Go Cryptographic Module and starts with GODEBUG=fips140=on; any
// binary can be started with GODEBUG=fips140=on or fips140=only. See
// docs/fips.md.
package fips

import "crypto/fips140"

// Mode is the fips140 setting the program started with: "off", "on" (FIPS
// 140-3 mode) or "only" (FIPS 140-3 mode, and non-approved algorithms fail).
func Mode() string {
	switch {
	case fips140.Enforced():
		return "only"
	case fips140.Enabled():
		return "on"
	default:
		return "off"
	}
}

// LogAttrs are the key-value pairs (for log/slog) that a binary's start-up
// log line gives about its cryptography: the mode, and the version of the
// Go Cryptographic Module it was built with ("latest" without GOFIPS140).
func LogAttrs() []any {
	return []any{"fips140", Mode(), "fips140_module", fips140.Version()}
}
