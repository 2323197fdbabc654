package metricsapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/common/model"
)

// DefaultSince is the window rates are computed over when a request does
// not say.
const DefaultSince = "1m"

// paramError is a bad request parameter; the API answers 400 with it.
type paramError struct {
	param string
	msg   string
}

func (e *paramError) Error() string { return fmt.Sprintf("parameter %q: %s", e.param, e.msg) }

// window is the part every endpoint shares: which namespace, over what
// range.
type window struct {
	namespace string
	since     string // a valid PromQL range, e.g. "1m"
}

func parseWindow(r *http.Request) (window, error) {
	q := r.URL.Query()
	win := window{namespace: q.Get("namespace"), since: q.Get("since")}
	if win.since == "" {
		win.since = DefaultSince
	}
	d, err := model.ParseDuration(win.since)
	if err != nil {
		return window{}, &paramError{"since", fmt.Sprintf("%q is not a duration like 30s, 1m or 1h", win.since)}
	}
	if d <= 0 {
		return window{}, &paramError{"since", "must be positive"}
	}
	// Canonical form: what Prometheus will parse back the same way.
	win.since = d.String()
	if err := checkName("namespace", win.namespace); err != nil {
		return window{}, err
	}
	return win, nil
}

// checkName refuses values no Kubernetes object name has, so the API's
// answers stay predictable. Values are escaped in PromQL regardless.
func checkName(param, v string) error {
	if len(v) > 253 || strings.ContainsAny(v, "\"\\\n\r\t{}") {
		return &paramError{param, fmt.Sprintf("%q is not a valid name", v)}
	}
	return nil
}
