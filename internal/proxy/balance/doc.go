// Package balance picks an endpoint for each request to one destination:
// power of two choices over peak-EWMA load, with a failure penalty and
// circuit breakers (Service-wide and per route). It does not discover endpoints,
// connect or retry; callers do, and report back through a Handle.
//
// The cost of an endpoint is its RTT estimate × (requests in flight + 1) ÷
// its weight. Pick draws two distinct endpoints at random and takes the
// cheaper. The RTT estimate is peak-sensitive: a sample above it replaces
// it at once (but raises it at most twofold per answer), a sample below
// pulls it down over the decay window, and at least 1/16 of the way, so
// that under load a peak fades by about e every 16 answers, not over
// seconds. Each comparison an idle endpoint loses fades its estimate toward
// zero (by e every 20), so an endpoint that is avoided (and so never
// measured) is tried again eventually and can show that it recovered, and
// one wrong estimate costs an endpoint the same number of calls whatever
// the call rate. A failed request counts as a sample of at least
// FailurePenalty, so failing fast does not look fast.
//
// A new endpoint starts with the DefaultRTT prior: it gets one request at
// once (an endpoint with no answer yet and nothing in flight costs 0) and
// is judged by the prior until that request answers, so it is not flooded;
// its first answer replaces the prior.
//
// Each request is judged in one breaker scope: the Service-wide one
// (Options.Breaker, changed in place by SetBreaker) or a route's own
// (SetRouteBreakers, picked with PickRoute), which keeps its own RTT
// estimates and breakers per endpoint, so that a route failing on an
// endpoint costs it nothing for other routes; only the in-flight counts are
// shared. A scope's BreakerPolicy ejects an endpoint after Consecutive
// failures, or when its success rate over Window falls below SuccessRate;
// FailureClass says what a failure is. The ejection lasts MinPenalty plus
// up to Jitter of it; then the breaker is half-open and one probe request
// at a time may go to it, when P2C chooses it. The probe's success closes
// the breaker; its failure ejects the endpoint again for twice as long, up
// to MaxPenalty. A breaker never ejects more than MaxEjectedPercent of the
// endpoints (rounded down; the breaker that would pass the cap stays
// closed), so with the default 50% a lone endpoint is never ejected. When
// every endpoint of a scope is ejected all the same (a 100% cap, or the
// healthy ones left the set), Pick returns ErrAllEjected.
//
// The split follows grpc-go's balancer/picker: Update, SetBreaker and
// SetRouteBreakers (slow path, locks) build an immutable picker snapshot
// and swap it in atomically; Pick reads the snapshot and per-endpoint
// atomics only. Per-endpoint state is kept by
// address across Updates and policy changes; a removed endpoint's or
// route's state goes with it.
package balance
