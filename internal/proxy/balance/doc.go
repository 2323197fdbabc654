// Package balance picks an endpoint for each request to one destination:
// power of two choices over peak-EWMA load, with a failure penalty and
// failure accrual (the circuit breaker). It does not discover endpoints,
// connect or retry; callers do, and report back through a Handle.
//
// The cost of an endpoint is its RTT estimate × (requests in flight + 1) ÷
// its weight. Pick draws two distinct endpoints at random and takes the
// cheaper. The RTT estimate is peak-sensitive: a sample above it replaces
// it at once (but raises it at most twofold per answer), a sample below
// pulls it down over the decay window. Each comparison an idle endpoint
// loses fades its estimate toward zero (by e every 20), so an endpoint
// that is avoided (and so never measured) is tried again eventually and can
// show that it recovered, and one wrong estimate costs an endpoint the same
// number of calls whatever the call rate. A failed request counts as a
// sample of at least FailurePenalty, so failing fast does not look fast.
//
// A new endpoint starts with the DefaultRTT prior: it gets one request at
// once (an endpoint with no answer yet and nothing in flight costs 0) and
// is judged by the prior until that request answers, so it is not flooded;
// its first answer replaces the prior.
//
// FailureAccrual consecutive failures eject an endpoint for EjectMin; then
// it is half-open and one probe request at a time may go to it, when P2C
// chooses it. The probe's success closes the breaker; its failure ejects the
// endpoint again for twice as long, up to EjectMax. When every endpoint is
// ejected, Pick ignores the breakers (fail open).
//
// The split follows grpc-go's balancer/picker: Update (slow path, locks)
// builds an immutable picker snapshot and swaps it in atomically; Pick reads
// the snapshot and per-endpoint atomics only. Per-endpoint state is kept by
// address across Updates.
package balance
