package metricsapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// matcher is one label matcher of a PromQL selector.
type matcher struct {
	name, op, value string
}

func eq(name, value string) matcher { return matcher{name, "=", value} }
func ne(name, value string) matcher { return matcher{name, "!=", value} }

// selector writes metric{m1,m2,...} with every value quoted and escaped, so
// no request parameter can change the query's shape.
func selector(metric string, ms ...matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		// PromQL string literals use Go's escaping rules.
		parts[i] = m.name + m.op + strconv.Quote(m.value)
	}
	return metric + "{" + strings.Join(parts, ",") + "}"
}

// with returns base plus more, without changing base's backing array.
func with(base []matcher, more ...matcher) []matcher {
	return append(append(make([]matcher, 0, len(base)+len(more)), base...), more...)
}

// queryError is a failed PromQL query.
type queryError struct {
	query string
	err   error
}

func (e *queryError) Error() string {
	var apiErr *promv1.Error
	if errors.As(e.err, &apiErr) {
		return fmt.Sprintf("Prometheus could not answer %s: %v", e.query, e.err)
	}
	return fmt.Sprintf("cannot reach Prometheus: %v", e.err)
}

func (e *queryError) Unwrap() error { return e.err }

// ours reports whether the query itself was wrong (a bug here, 500) rather
// than Prometheus being unreachable or failing (503).
func (e *queryError) ours() bool {
	var apiErr *promv1.Error
	return errors.As(e.err, &apiErr) && apiErr.Type == promv1.ErrBadData
}

// instant is one evaluation time shared by every query of a request, so the
// numbers of one answer agree with each other.
type instant struct {
	s  *server
	ts time.Time
}

// vector runs q at the instant and returns its result, which must be an
// instant vector (every query here is one).
func (in instant) vector(ctx context.Context, q string) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, in.s.timeout)
	defer cancel()
	v, warnings, _, err := in.s.prom.Query(ctx, q, in.ts)
	if err != nil {
		return nil, &queryError{query: q, err: err}
	}
	if len(warnings) > 0 {
		in.s.log.Debug("Prometheus warnings", "query", q, "warnings", warnings)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, &queryError{query: q, err: fmt.Errorf("got a %s, want a vector", v.Type())}
	}
	return vec, nil
}

// groupKey joins the values of labels in m, to key a grouped result.
func groupKey(m model.Metric, labels []string) string {
	vals := make([]string, len(labels))
	for i, l := range labels {
		vals[i] = string(m[model.LabelName(l)])
	}
	return strings.Join(vals, "\x00")
}

// byClause is "by (a, b)".
func byClause(labels []string) string {
	return "by (" + strings.Join(labels, ", ") + ")"
}

// sumRate is sum by (labels) (rate(metric{ms}[since])).
func sumRate(metric string, ms []matcher, labels []string, since string) string {
	return fmt.Sprintf("sum %s (rate(%s[%s]))", byClause(labels), selector(metric, ms...), since)
}

// latencyQuantile is q's latency in ms per group from response_latency_ms.
func latencyQuantile(q float64, ms []matcher, labels []string, since string) string {
	by := byClause(append([]string{"le"}, labels...))
	return fmt.Sprintf("histogram_quantile(%g, sum %s (rate(%s[%s])))",
		q, by, selector("response_latency_ms_bucket", ms...), since)
}
