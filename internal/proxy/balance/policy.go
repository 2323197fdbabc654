package balance

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/routes"
)

// Defaults of a breaker (see DefaultBreaker and BreakerFromRoute).
const (
	DefaultConsecutive       = 7
	DefaultMinPenalty        = time.Second
	DefaultMaxPenalty        = time.Minute
	DefaultJitter            = 0.1
	DefaultWindow            = 30 * time.Second
	DefaultMinRequests       = 20
	DefaultMaxEjectedPercent = 50
)

// BreakerPolicy configures one circuit breaker: the Service-wide one of a
// destination (Options.Breaker, SetBreaker) or a route's own (SetRouteBreakers).
// An endpoint is ejected by Consecutive failures in a row, or by a success
// rate below SuccessRate over Window once it had MinRequests requests there;
// the ejection lasts MinPenalty, doubled by each failed probe up to
// MaxPenalty, plus up to Jitter of it at random. At most MaxEjectedPercent of
// the endpoints (rounded down) are ejected at once by one breaker: the
// breaker of an endpoint that would pass the cap stays closed.
type BreakerPolicy struct {
	// Consecutive failures that eject an endpoint; 0 turns this off.
	Consecutive int
	// SuccessRate (0-1) below which an endpoint is ejected; 0 turns this off.
	SuccessRate float64
	// Window is the success-rate window; zero takes DefaultWindow.
	Window time.Duration
	// MinRequests in Window before the success rate is judged; zero takes
	// DefaultMinRequests.
	MinRequests int
	// MinPenalty and MaxPenalty bound the ejection; zero takes the
	// defaults.
	MinPenalty, MaxPenalty time.Duration
	// Jitter (0-1) adds up to this share of each ejection at random, so
	// that endpoints ejected together do not come back together. 0: none.
	Jitter float64
	// MaxEjectedPercent (1-100) caps the share of endpoints ejected at
	// once; zero takes DefaultMaxEjectedPercent.
	MaxEjectedPercent int
	// Failures says which answers count as failures.
	Failures FailureClass
}

// DefaultBreaker is the Service-wide breaker of a destination without a
// policy: 7 consecutive failures, 1 s to 1 min, 10% jitter, at most half
// the endpoints ejected, success-rate mode off, 5xx and the gRPC server
// codes counting as failures.
func DefaultBreaker() BreakerPolicy {
	return BreakerPolicy{Consecutive: DefaultConsecutive, Jitter: DefaultJitter}.withDefaults()
}

// Validate reports settings withDefaults would silently replace.
func (p BreakerPolicy) Validate() error {
	var errs []error
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"Window", p.Window}, {"MinPenalty", p.MinPenalty}, {"MaxPenalty", p.MaxPenalty}} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("breaker: %s is negative (%v)", d.name, d.value))
		}
	}
	if p.Consecutive < 0 || p.MinRequests < 0 {
		errs = append(errs, fmt.Errorf("breaker: Consecutive (%d) and MinRequests (%d) may not be negative", p.Consecutive, p.MinRequests))
	}
	if p.SuccessRate < 0 || p.SuccessRate > 1 || p.Jitter < 0 || p.Jitter > 1 {
		errs = append(errs, fmt.Errorf("breaker: SuccessRate (%v) and Jitter (%v) must be within 0-1", p.SuccessRate, p.Jitter))
	}
	if p.MaxEjectedPercent < 0 || p.MaxEjectedPercent > 100 {
		errs = append(errs, fmt.Errorf("breaker: MaxEjectedPercent (%d) must be within 0-100", p.MaxEjectedPercent))
	}
	if p.MinPenalty > 0 && p.MaxPenalty > 0 && p.MaxPenalty < p.MinPenalty {
		errs = append(errs, fmt.Errorf("breaker: MaxPenalty (%v) is below MinPenalty (%v)", p.MaxPenalty, p.MinPenalty))
	}
	return errors.Join(errs...)
}

// withDefaults fills zero fields and clamps what Validate would reject.
func (p BreakerPolicy) withDefaults() BreakerPolicy {
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	orDefault(&p.Window, DefaultWindow)
	orDefault(&p.MinPenalty, DefaultMinPenalty)
	orDefault(&p.MaxPenalty, DefaultMaxPenalty)
	p.MaxPenalty = max(p.MaxPenalty, p.MinPenalty)
	if p.MinRequests <= 0 {
		p.MinRequests = DefaultMinRequests
	}
	if p.MaxEjectedPercent <= 0 {
		p.MaxEjectedPercent = DefaultMaxEjectedPercent
	}
	p.MaxEjectedPercent = min(p.MaxEjectedPercent, 100)
	p.Consecutive = max(p.Consecutive, 0)
	p.SuccessRate = min(max(p.SuccessRate, 0), 1)
	p.Jitter = min(max(p.Jitter, 0), 1)
	return p
}

// BreakerFromRoute is the breaker a policy's routes.Breaker asks for. The
// controller sends Consecutive as meant (0: off; it fills in 7 for a
// Service that does not say); the other zero fields mean "not set" and
// take the defaults, Jitter included. nil is DefaultBreaker.
func BreakerFromRoute(rb *routes.Breaker) BreakerPolicy {
	if rb == nil {
		return DefaultBreaker()
	}
	p := BreakerPolicy{
		Consecutive:       rb.Consecutive,
		SuccessRate:       rb.SuccessRate,
		Window:            rb.Window,
		MinRequests:       rb.MinRequests,
		MinPenalty:        rb.MinPenalty,
		MaxPenalty:        rb.MaxPenalty,
		Jitter:            rb.Jitter,
		MaxEjectedPercent: rb.MaxEjectedPercent,
		Failures:          FailureClass{HTTP: rb.FailureHTTP, GRPC: rb.FailureGRPC},
	}
	if p.Jitter <= 0 {
		p.Jitter = DefaultJitter
	}
	return p.withDefaults()
}

// FailureClass says which answers count as failures for the breaker and the
// failure penalty. With both lists empty it is the metrics' own rule
// (metrics.IsFailure: 5xx, and gRPC UNKNOWN, DEADLINE_EXCEEDED,
// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), so what the metrics call
// a failure is what the balancer avoids. Otherwise exactly the listed HTTP
// statuses and gRPC codes count (a 429 only when listed). No answer at all
// (status 0: connect failure, reset) always counts.
type FailureClass struct {
	HTTP []routes.StatusRange
	GRPC []int
}

// Failed classifies one answer: its HTTP status (0 for none) and its
// grpc-status ("" when not gRPC), from the headers or the trailers.
func (c *FailureClass) Failed(status int, grpcStatus string) bool {
	if len(c.HTTP) == 0 && len(c.GRPC) == 0 {
		return metrics.IsFailure(status, grpcStatus)
	}
	if status == 0 {
		return true
	}
	for _, r := range c.HTTP {
		if status >= r.Min && status <= r.Max {
			return true
		}
	}
	if grpcStatus == "" || len(c.GRPC) == 0 {
		return false
	}
	code, err := strconv.Atoi(grpcStatus)
	if err != nil || code < 0 || code > 16 {
		code = 2 // UNKNOWN, as the gRPC spec reads an unknown code
	}
	for _, listed := range c.GRPC {
		if code == listed {
			return true
		}
	}
	return false
}
