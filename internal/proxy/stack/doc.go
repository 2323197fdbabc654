// Package stack holds the proxy's own HTTP request and response types and
// the layer stack every request passes through. The engines (h1, h2) turn
// connections into Requests and hand each to a Handler; a Layer wraps the
// next Handler to add one feature (metrics, resolution, balancing, policy,
// retries, tap). The stack of one direction is assembled in one place (see
// the proxy package). This package has no I/O of its own.
package stack
