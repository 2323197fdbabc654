package stack

import "errors"

// ErrNoEndpoints is returned when a known destination has no endpoint to
// send to.
var ErrNoEndpoints = errors.New("destination has no endpoints")

// ErrRefusedWithoutMTLS is returned when a request will not be sent
// because it cannot go over mutual TLS and may not go without: discovery
// has not said whether the destination is meshed.
var ErrRefusedWithoutMTLS = errors.New("refusing to send without mTLS")

// NotSentError marks a failure before any byte of the request reached the
// upstream (connect refused, TLS handshake failed, HTTP/2 stream refused
// or past a GOAWAY): the request is as safe to try elsewhere as one never
// sent, whatever its method.
type NotSentError struct{ Err error }

func (e *NotSentError) Error() string { return e.Err.Error() }
func (e *NotSentError) Unwrap() error { return e.Err }

// NotSent wraps err as a NotSentError; nil stays nil.
func NotSent(err error) error {
	if err == nil {
		return nil
	}
	return &NotSentError{Err: err}
}

// IsNotSent reports whether err says the request was never sent.
func IsNotSent(err error) bool {
	var ns *NotSentError
	return errors.As(err, &ns)
}

// ErrNoRoute is returned when the destination has routes and none of them
// matches the request (HTTPRoute semantics): 404, gRPC UNIMPLEMENTED.
var ErrNoRoute = errors.New("no route")

// ErrTimeout is returned (wrapped, naming the timeout) when a timeout of
// the request's route or its grpc-timeout ran out: 504, gRPC
// DEADLINE_EXCEEDED.
var ErrTimeout = errors.New("request timeout")

// ErrAllEjected is returned when every endpoint of a destination is ejected
// by its circuit breaker (see docs/proxy.md): 503, gRPC UNAVAILABLE, like no
// endpoints, but told apart.
var ErrAllEjected = errors.New("all endpoints ejected")
