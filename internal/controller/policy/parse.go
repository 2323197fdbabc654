package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"

	"github.com/skeinmesh/skein/internal/routes"
)

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
