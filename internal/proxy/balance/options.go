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
	DefaultEjectMin       = time.Second
	DefaultEjectMax       = time.Minute
	// DefaultFailureAccrual is what DefaultOptions sets; the zero Options
	// leave failure accrual off.
	DefaultFailureAccrual = 7
)

// Options tune a Balancer. Zero durations take the defaults above.
type Options struct {
	// DecayWindow is the time constant of the RTT estimate: how fast it
	// follows a sample below it. (The estimate of an endpoint that gets no
	// traffic fades with the comparisons it loses, not with time; see
	// rttSample.fadedAt.)
	DecayWindow time.Duration
	// DefaultRTT is the estimate an endpoint has before it first answers.
	DefaultRTT time.Duration
	// FailurePenalty is the least RTT sample a failed request counts as, so
	// that an endpoint failing fast looks slow, not fast.
	FailurePenalty time.Duration
	// FailureAccrual is the number of consecutive failures that eject an
	// endpoint (the circuit breaker opens); 0 disables ejection.
	FailureAccrual int
	// EjectMin and EjectMax bound the ejection back-off: the first ejection
	// lasts EjectMin, each failed probe doubles it, up to EjectMax.
	EjectMin, EjectMax time.Duration
	// Now is the clock; tests inject a fake one. Default time.Now.
	Now func() time.Time
	// Rand returns uniformly random bits; it must be safe for concurrent
	// use. Default math/rand/v2's Uint64.
	Rand func() uint64
}

// DefaultOptions returns the recommended settings, failure accrual on.
func DefaultOptions() Options {
	return Options{FailureAccrual: DefaultFailureAccrual}.withDefaults()
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
		{"EjectMin", o.EjectMin},
		{"EjectMax", o.EjectMax},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("balance options: %s is negative (%v)", d.name, d.value))
		}
	}
	if o.FailureAccrual < 0 {
		errs = append(errs, fmt.Errorf("balance options: FailureAccrual is negative (%d)", o.FailureAccrual))
	}
	if o.EjectMin > 0 && o.EjectMax > 0 && o.EjectMax < o.EjectMin {
		errs = append(errs, fmt.Errorf("balance options: EjectMax (%v) is below EjectMin (%v)", o.EjectMax, o.EjectMin))
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
	orDefault(&o.EjectMin, DefaultEjectMin)
	orDefault(&o.EjectMax, DefaultEjectMax)
	o.EjectMax = max(o.EjectMax, o.EjectMin)
	o.FailureAccrual = max(o.FailureAccrual, 0)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Uint64
	}
	return o
}
