package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults for the zero fields of Options.
const (
	DefaultDecayWindow    = 2 * time.Second
	DefaultRTT            = 30 * time.Millisecond
	DefaultFailurePenalty = time.Second
)

// Options tune a Balancer. Zero durations take the defaults above.
type Options struct {
	// DecayWindow is the time constant of the RTT estimate: how fast it
	// follows a sample below it (each such sample pulls it at least 1/16
	// of the way, however soon it comes). (The estimate of an endpoint
	// that gets no traffic fades with the comparisons it loses, not with
	// time; see rttSample.fadedAt.)
	DecayWindow time.Duration
	// DefaultRTT is the estimate an endpoint has before it first answers.
	DefaultRTT time.Duration
	// FailurePenalty is the least RTT sample a failed request counts as, so
	// that an endpoint failing fast looks slow, not fast.
	FailurePenalty time.Duration
	// Breaker is the Service-wide circuit breaker until SetBreaker says
	// otherwise; the zero BreakerPolicy ejects nothing.
	Breaker BreakerPolicy
	// OnBreaker, if set, is told of every ejection, restoration and
	// ejection held back by the cap, synchronously: it must be quick.
	OnBreaker func(BreakerEvent)
	// Now is the clock; tests inject a fake one. Default time.Now.
	Now func() time.Time
	// Rand returns uniformly random bits; it must be safe for concurrent
	// use. Default math/rand/v2's Uint64.
	Rand func() uint64
}

// DefaultOptions returns the recommended settings, the breaker on
// (DefaultBreaker).
func DefaultOptions() Options {
	return Options{Breaker: DefaultBreaker()}.withDefaults()
}

// Validate reports settings that New would silently replace.
func (o Options) Validate() error {
	var errs []error
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"DecayWindow", o.DecayWindow},
		{"DefaultRTT", o.DefaultRTT},
		{"FailurePenalty", o.FailurePenalty},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("balance options: %s is negative (%v)", d.name, d.value))
		}
	}
	if err := o.Breaker.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("balance options: %w", err))
	}
	return errors.Join(errs...)
}

// withDefaults fills zero fields and clamps values Validate would reject.
func (o Options) withDefaults() Options {
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	orDefault(&o.DecayWindow, DefaultDecayWindow)
	orDefault(&o.DefaultRTT, DefaultRTT)
	orDefault(&o.FailurePenalty, DefaultFailurePenalty)
	o.Breaker = o.Breaker.withDefaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Uint64
	}
	return o
}
