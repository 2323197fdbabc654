package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skeinmesh/skein/internal/routes"
)

// The skein.io/ annotations the compiler reads. On a Service they are the
// defaults of its routes; on an HTTPRoute or GRPCRoute they apply to its
// rules and override the Service's, key by key.
const (
	AnnTimeoutRequest        = "skein.io/timeout-request"
	AnnTimeoutResponseHeader = "skein.io/timeout-response-header"
	AnnTimeoutIdle           = "skein.io/timeout-idle"

	AnnRetryHTTP          = "skein.io/retry-http"
	AnnRetryGRPC          = "skein.io/retry-grpc"
	AnnRetryLimit         = "skein.io/retry-limit"
	AnnRetryTimeout       = "skein.io/retry-timeout"
	AnnRetryBackoff       = "skein.io/retry-backoff"
	AnnRetryNonIdempotent = "skein.io/retry-non-idempotent"

	AnnBudgetRatio        = "skein.io/retry-budget-ratio"
	AnnBudgetMinPerSecond = "skein.io/retry-budget-min-per-second"
	AnnBudgetTTL          = "skein.io/retry-budget-ttl"

	AnnBreakerConsecutive       = "skein.io/breaker-consecutive"
	AnnBreakerSuccessRate       = "skein.io/breaker-success-rate"
	AnnBreakerWindow            = "skein.io/breaker-window"
	AnnBreakerMinRequests       = "skein.io/breaker-min-requests"
	AnnBreakerMinPenalty        = "skein.io/breaker-min-penalty"
	AnnBreakerMaxPenalty        = "skein.io/breaker-max-penalty"
	AnnBreakerJitter            = "skein.io/breaker-jitter"
	AnnBreakerFailure           = "skein.io/breaker-failure"
	AnnBreakerMaxEjectedPercent = "skein.io/breaker-max-ejected-percent"

	AnnFaultAbortHTTP    = "skein.io/fault-abort-http"
	AnnFaultAbortGRPC    = "skein.io/fault-abort-grpc"
	AnnFaultAbortPercent = "skein.io/fault-abort-percent"
	AnnFaultDelay        = "skein.io/fault-delay"
	AnnFaultDelayPercent = "skein.io/fault-delay-percent"

	AnnMirrorCompareHeaders = "skein.io/mirror-compare-headers"
)

// Defaults of what the annotations leave unset.
const (
	DefaultRetryLimit         = 2
	DefaultRetryBackoffBase   = 25 * time.Millisecond
	DefaultRetryBackoffMax    = 250 * time.Millisecond
	DefaultBudgetRatio        = 0.2
	DefaultBudgetMinPerSecond = 10
	DefaultBudgetTTL          = 10 * time.Second

	DefaultBreakerConsecutive       = 7
	DefaultBreakerWindow            = 30 * time.Second
	DefaultBreakerMinRequests       = 20
	DefaultBreakerMinPenalty        = time.Second
	DefaultBreakerMaxPenalty        = time.Minute
	DefaultBreakerJitter            = 0.1
	DefaultBreakerMaxEjectedPercent = 50
)

// DefaultBreakerFailure and DefaultCompareHeaders are the defaults of
// skein.io/breaker-failure and skein.io/mirror-compare-headers.
const (
	DefaultBreakerFailure = "5xx"
	DefaultCompareHeaders = "content-type,grpc-status"
)

// scope says which objects an annotation may be put on.
type scope int

const (
	onBoth scope = iota
	onServiceOnly
	onRouteOnly
)

type annotation struct {
	scope scope
	check func(string) error
}

var annotations = map[string]annotation{
	AnnTimeoutRequest:        {onBoth, checkWith(parseDuration)},
	AnnTimeoutResponseHeader: {onBoth, checkWith(parseDuration)},
	AnnTimeoutIdle:           {onBoth, checkWith(parseDuration)},

	AnnRetryHTTP:          {onBoth, checkWith(parseRetryHTTP)},
	AnnRetryGRPC:          {onBoth, checkWith(parseGRPCCodes)},
	AnnRetryLimit:         {onBoth, checkWith(parseCount)},
	AnnRetryTimeout:       {onBoth, checkWith(parseDuration)},
	AnnRetryBackoff:       {onBoth, checkWith(parseBackoff)},
	AnnRetryNonIdempotent: {onBoth, checkWith(parseBool)},

	AnnBudgetRatio:        {onServiceOnly, checkWith(parseShare)},
	AnnBudgetMinPerSecond: {onServiceOnly, checkWith(parseCount)},
	AnnBudgetTTL:          {onServiceOnly, checkWith(parsePositiveDuration)},

	AnnBreakerConsecutive:       {onBoth, checkWith(parseCount)},
	AnnBreakerSuccessRate:       {onBoth, checkWith(parseShare)},
	AnnBreakerWindow:            {onBoth, checkWith(parsePositiveDuration)},
	AnnBreakerMinRequests:       {onBoth, checkWith(parseCount)},
	AnnBreakerMinPenalty:        {onBoth, checkWith(parsePositiveDuration)},
	AnnBreakerMaxPenalty:        {onBoth, checkWith(parsePositiveDuration)},
	AnnBreakerJitter:            {onBoth, checkWith(parseShare)},
	AnnBreakerFailure:           {onBoth, checkWith(parseFailure)},
	AnnBreakerMaxEjectedPercent: {onBoth, checkWith(parsePercentInt)},

	AnnFaultAbortHTTP:    {onRouteOnly, checkWith(parseStatus)},
	AnnFaultAbortGRPC:    {onRouteOnly, checkWith(parseGRPCCode)},
	AnnFaultAbortPercent: {onRouteOnly, checkWith(parsePercent)},
	AnnFaultDelay:        {onRouteOnly, checkWith(parseDuration)},
	AnnFaultDelayPercent: {onRouteOnly, checkWith(parsePercent)},

	AnnMirrorCompareHeaders: {onBoth, checkWith(parseHeaderNames)},
}

func checkWith[T any](parse func(string) (T, error)) func(string) error {
	return func(s string) error { _, err := parse(s); return err }
}

// policyFamilies are the prefixes of the annotations above: an unknown key
// with one of them is a typo, reported rather than ignored.
var policyFamilies = []string{"skein.io/timeout-", "skein.io/retry-", "skein.io/breaker-", "skein.io/fault-", "skein.io/mirror-"}

// settings are the validated policy annotations of one object (other
// annotations left out). Later layers override earlier ones key by key.
type settings map[string]string

// parseSettings validates the policy annotations of an object and returns
// them, or one error per bad annotation.
func parseSettings(ann map[string]string, onService bool) (settings, []*annotationError) {
	s := settings{}
	var errs []*annotationError
	for _, key := range slices.Sorted(maps.Keys(ann)) {
		value := ann[key]
		a, known := annotations[key]
		if !known {
			if slices.ContainsFunc(policyFamilies, func(p string) bool { return strings.HasPrefix(key, p) }) {
				errs = append(errs, &annotationError{key, value, errors.New("unknown annotation")})
			}
			continue
		}
		switch {
		case onService && a.scope == onRouteOnly:
			errs = append(errs, &annotationError{key, value, errors.New("applies to an HTTPRoute or GRPCRoute, not a Service")})
			continue
		case !onService && a.scope == onServiceOnly:
			errs = append(errs, &annotationError{key, value, errors.New("applies to a Service, not a route")})
			continue
		}
		if err := a.check(value); err != nil {
			errs = append(errs, &annotationError{key, value, err})
			continue
		}
		s[key] = value
	}
	if err := s.checkTogether(ann); err != nil {
		errs = append(errs, err)
	}
	return s, errs
}

// checkTogether checks what one annotation says about another. Presence is
// read from all, the object's annotations as written, so that a bad value
// is reported once, not again as missing.
func (s settings) checkTogether(all map[string]string) *annotationError {
	if v, ok := s[AnnFaultAbortPercent]; ok {
		_, http := all[AnnFaultAbortHTTP]
		_, grpc := all[AnnFaultAbortGRPC]
		if !http && !grpc {
			return &annotationError{AnnFaultAbortPercent, v, fmt.Errorf("needs %s or %s: what to answer", AnnFaultAbortHTTP, AnnFaultAbortGRPC)}
		}
	}
	if v, ok := s[AnnFaultDelayPercent]; ok {
		if _, delay := all[AnnFaultDelay]; !delay {
			return &annotationError{AnnFaultDelayPercent, v, fmt.Errorf("needs %s: how long to delay", AnnFaultDelay)}
		}
	}
	if lo, ok := s[AnnBreakerMinPenalty]; ok {
		if hi, ok := s[AnnBreakerMaxPenalty]; ok {
			min, _ := parseDuration(lo)
			max, _ := parseDuration(hi)
			if max < min {
				return &annotationError{AnnBreakerMaxPenalty, hi, fmt.Errorf("is shorter than %s %s", AnnBreakerMinPenalty, lo)}
			}
		}
	}
	return nil
}

// over returns s with top's keys overriding.
func (s settings) over(top settings) settings {
	out := maps.Clone(s)
	if out == nil {
		out = settings{}
	}
	maps.Copy(out, top)
	return out
}

func (s settings) hasAny(keys ...string) bool {
	return slices.ContainsFunc(keys, func(k string) bool { _, ok := s[k]; return ok })
}

// The getters below read validated values: parse errors cannot happen.

func (s settings) duration(key string, def time.Duration) time.Duration {
	if v, ok := s[key]; ok {
		d, _ := parseDuration(v)
		return d
	}
	return def
}

func (s settings) count(key string, def int) int {
	if v, ok := s[key]; ok {
		n, _ := parseCount(v)
		return n
	}
	return def
}

func (s settings) float(key string, def float64) float64 {
	if v, ok := s[key]; ok {
		f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f
	}
	return def
}

// timeouts are the annotations' timeouts.
func (s settings) timeouts() routes.Timeouts {
	return routes.Timeouts{
		Request:        s.duration(AnnTimeoutRequest, 0),
		ResponseHeader: s.duration(AnnTimeoutResponseHeader, 0),
		Idle:           s.duration(AnnTimeoutIdle, 0),
	}
}

// retry is the retry policy, nil unless retry-http or retry-grpc is set.
func (s settings) retry() *routes.Retry {
	if !s.hasAny(AnnRetryHTTP, AnnRetryGRPC) {
		return nil
	}
	r := &routes.Retry{
		Limit:       s.count(AnnRetryLimit, DefaultRetryLimit),
		PerTry:      s.duration(AnnRetryTimeout, 0),
		BackoffBase: DefaultRetryBackoffBase,
		BackoffMax:  DefaultRetryBackoffMax,
	}
	if v, ok := s[AnnRetryHTTP]; ok {
		c, _ := parseRetryHTTP(v)
		r.HTTP, r.GatewayError, r.Reset = c.ranges, c.gatewayError, c.reset
	}
	if v, ok := s[AnnRetryGRPC]; ok {
		r.GRPC, _ = parseGRPCCodes(v)
	}
	if v, ok := s[AnnRetryBackoff]; ok {
		b, _ := parseBackoff(v)
		r.BackoffBase, r.BackoffMax = b[0], b[1]
	}
	if v, ok := s[AnnRetryNonIdempotent]; ok {
		r.NonIdempotent, _ = parseBool(v)
	}
	return r
}

// budget is the retry budget of a Service.
func (s settings) budget() routes.Budget {
	return routes.Budget{
		Ratio:        s.float(AnnBudgetRatio, DefaultBudgetRatio),
		MinPerSecond: s.count(AnnBudgetMinPerSecond, DefaultBudgetMinPerSecond),
		TTL:          s.duration(AnnBudgetTTL, DefaultBudgetTTL),
	}
}

// breakerKeys are the annotations of a breaker: a route with any of them
// has a breaker of its own.
var breakerKeys = []string{AnnBreakerConsecutive, AnnBreakerSuccessRate, AnnBreakerWindow, AnnBreakerMinRequests,
	AnnBreakerMinPenalty, AnnBreakerMaxPenalty, AnnBreakerJitter, AnnBreakerFailure, AnnBreakerMaxEjectedPercent}

// breaker is the circuit breaker the annotations describe, defaults filled
// in.
func (s settings) breaker() *routes.Breaker {
	b := &routes.Breaker{
		Consecutive:       s.count(AnnBreakerConsecutive, DefaultBreakerConsecutive),
		SuccessRate:       s.float(AnnBreakerSuccessRate, 0),
		Window:            s.duration(AnnBreakerWindow, DefaultBreakerWindow),
		MinRequests:       s.count(AnnBreakerMinRequests, DefaultBreakerMinRequests),
		MinPenalty:        s.duration(AnnBreakerMinPenalty, DefaultBreakerMinPenalty),
		MaxPenalty:        s.duration(AnnBreakerMaxPenalty, DefaultBreakerMaxPenalty),
		Jitter:            s.float(AnnBreakerJitter, DefaultBreakerJitter),
		MaxEjectedPercent: s.count(AnnBreakerMaxEjectedPercent, DefaultBreakerMaxEjectedPercent),
	}
	if b.MaxPenalty < b.MinPenalty {
		b.MaxPenalty = b.MinPenalty // a min-penalty set alone above the default max
	}
	failure := DefaultBreakerFailure
	if v, ok := s[AnnBreakerFailure]; ok {
		failure = v
	}
	f, _ := parseFailure(failure)
	b.FailureHTTP, b.FailureGRPC = f.http, f.grpc
	return b
}

// fault is the route's fault injection, nil when nothing is injected.
func (s settings) fault() *routes.Fault {
	f := &routes.Fault{
		AbortPercent: s.float(AnnFaultAbortPercent, 0),
		AbortHTTP:    s.count(AnnFaultAbortHTTP, 0),
		DelayPercent: s.float(AnnFaultDelayPercent, 0),
		Delay:        s.duration(AnnFaultDelay, 0),
	}
	if v, ok := s[AnnFaultAbortGRPC]; ok {
		f.AbortGRPC, _ = parseGRPCCode(v)
	}
	if f.AbortPercent == 0 && f.DelayPercent == 0 {
		return nil
	}
	return f
}

func (s settings) compareHeaders() []string {
	v, ok := s[AnnMirrorCompareHeaders]
	if !ok {
		v = DefaultCompareHeaders
	}
	h, _ := parseHeaderNames(v)
	return h
}
