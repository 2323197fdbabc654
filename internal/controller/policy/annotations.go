package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"

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

// Parsers. Their errors say what is wrong with the value; the caller names
// the object and the annotation.

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration (like 250ms, 2s or 1m)", s)
	}
	return d, nil
}

func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err == nil && d == 0 {
		return 0, fmt.Errorf("%q must be longer than 0", s)
	}
	return d, err
}

func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return n, nil
}

func parseBool(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is neither \"true\" nor \"false\"", s)
}

// parseShare reads a share between 0 and 1 ("0.2").
func parseShare(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 1 {
		return 0, fmt.Errorf("%q is not a share between 0 and 1 (like 0.2)", s)
	}
	return f, nil
}

// parsePercent reads a percentage, fractions allowed ("0.5", "10").
func parsePercent(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || f > 100 {
		return 0, fmt.Errorf("%q is not a percentage between 0 and 100", s)
	}
	return f, nil
}

func parsePercentInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("%q is not a whole percentage between 0 and 100", s)
	}
	return n, nil
}

func parseStatus(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 200 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status (200-599)", s)
	}
	return n, nil
}

// parseBackoff reads "25ms" (base; the cap is ten times it) or
// "25ms-250ms" (base-cap).
func parseBackoff(s string) ([2]time.Duration, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	base, err := parsePositiveDuration(lo)
	if err != nil {
		return [2]time.Duration{}, fmt.Errorf("%q is not a back-off (like 25ms or 25ms-250ms)", s)
	}
	max := 10 * base
	if isRange {
		if max, err = parsePositiveDuration(hi); err != nil || max < base {
			return [2]time.Duration{}, fmt.Errorf("%q is not a back-off (like 25ms or 25ms-250ms, the cap not below the base)", s)
		}
	}
	return [2]time.Duration{base, max}, nil
}

func parseStatusRange(s string) (routes.StatusRange, error) {
	if s == "5xx" {
		return routes.StatusRange{Min: 500, Max: 599}, nil
	}
	if s == "4xx" {
		return routes.StatusRange{Min: 400, Max: 499}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	min, err := strconv.Atoi(lo)
	max := min
	if err == nil && isRange {
		max, err = strconv.Atoi(hi)
	}
	if err != nil || min < 100 || max > 599 || max < min {
		return routes.StatusRange{}, fmt.Errorf("%q is not an HTTP status, range (500-504) or 5xx", s)
	}
	return routes.StatusRange{Min: min, Max: max}, nil
}

type retryConditions struct {
	ranges              []routes.StatusRange
	gatewayError, reset bool
}

func parseRetryHTTP(s string) (retryConditions, error) {
	var c retryConditions
	for _, item := range list(s) {
		switch item {
		case "gateway-error":
			c.gatewayError = true
		case "reset":
			c.reset = true
		default:
			r, err := parseStatusRange(item)
			if err != nil {
				return c, fmt.Errorf("%w, gateway-error or reset", err)
			}
			c.ranges = append(c.ranges, r)
		}
	}
	if len(c.ranges) == 0 && !c.gatewayError && !c.reset {
		return c, fmt.Errorf("%q lists no condition", s)
	}
	return c, nil
}

type failureSet struct {
	http []routes.StatusRange
	grpc []int
}

// parseFailure reads "5xx,429,grpc:unavailable".
func parseFailure(s string) (failureSet, error) {
	var f failureSet
	for _, item := range list(s) {
		if name, ok := strings.CutPrefix(item, "grpc:"); ok {
			code, err := parseGRPCCode(name)
			if err != nil {
				return f, err
			}
			f.grpc = append(f.grpc, code)
			continue
		}
		r, err := parseStatusRange(item)
		if err != nil {
			return f, fmt.Errorf("%w, or grpc:<code>", err)
		}
		f.http = append(f.http, r)
	}
	if len(f.http) == 0 && len(f.grpc) == 0 {
		return f, fmt.Errorf("%q lists no failure", s)
	}
	return f, nil
}

// grpcCodes maps names like "resource-exhausted" to gRPC codes: grpc-go's
// names, lower-case with dashes.
var grpcCodes = func() map[string]int {
	m := map[string]int{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[dashed(c.String())] = int(c)
	}
	return m
}()

func dashed(camel string) string {
	var b strings.Builder
	for i, r := range camel {
		if unicode.IsUpper(r) && i > 0 && camel != "OK" {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func parseGRPCCode(s string) (int, error) {
	c, ok := grpcCodes[strings.ToLower(strings.TrimSpace(s))]
	if !ok || c == 0 {
		return 0, fmt.Errorf("%q is not a gRPC status code name (like unavailable or resource-exhausted)", s)
	}
	return c, nil
}

func parseGRPCCodes(s string) ([]int, error) {
	var out []int
	for _, item := range list(s) {
		c, err := parseGRPCCode(item)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q lists no gRPC status code", s)
	}
	return out, nil
}

func parseHeaderNames(s string) ([]string, error) {
	var out []string
	for _, item := range list(s) {
		if strings.ContainsFunc(item, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) }) {
			return nil, fmt.Errorf("%q is not a header name", item)
		}
		out = append(out, strings.ToLower(item))
	}
	return out, nil
}

// list splits a comma list, dropping blanks.
func list(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
