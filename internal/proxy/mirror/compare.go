package mirror

import (
	"time"

	"github.com/skeinmesh/skein/internal/proxy/redact"
	"github.com/skeinmesh/skein/internal/routes"
)

// diff is how a mirror's answer differs from the primary's; nil when it
// does not.
type diff struct {
	status  bool
	headers []HeaderDiff
	body    bool
}

// HeaderDiff is one compared field whose values differ (redacted).
type HeaderDiff struct {
	Name    string
	Primary string
	Mirror  string
}

// compare compares the status, the named fields and the bodies (their
// hashes up to MaxBody, and whether one went on past it).
func compare(primary, shadow *answer, names []string) *diff {
	var d diff
	d.status = primary.status != shadow.status
	for _, n := range names {
		if p, s := primary.field(n), shadow.field(n); p != s {
			d.headers = append(d.headers, HeaderDiff{
				Name: n, Primary: clip(redact.Value(n, p)), Mirror: clip(redact.Value(n, s)),
			})
		}
	}
	d.body = primary.sum != shadow.sum || primary.longer != shadow.longer
	if !d.status && len(d.headers) == 0 && !d.body {
		return nil
	}
	return &d
}

// Example is one recent mismatch, as `skein diff` shows it. Header values
// are redacted (see package redact) and every string is bounded.
type Example struct {
	Time          time.Time
	Route         string // route_name
	Backend       string // the mirror's authority
	Method        string
	Path          string // up to PrefixLen bytes
	PrimaryStatus int
	MirrorStatus  int
	// Headers are the compared fields whose values differ.
	Headers []HeaderDiff
	// BodyDiffers: the hashes differ, or one body is longer than MaxBody
	// and the other is not.
	BodyDiffers bool
	// PrimaryBody and MirrorBody are the first PrefixLen bytes of each.
	PrimaryBody, MirrorBody []byte
}

func exampleOf(cp *copyOf, mr *routes.Mirror, primary, shadow *answer, d *diff) Example {
	return Example{
		Time:          time.Now(),
		Route:         cp.route,
		Backend:       mr.Backend.Authority,
		Method:        clip(cp.method),
		Path:          clip(cp.path),
		PrimaryStatus: primary.status,
		MirrorStatus:  shadow.status,
		Headers:       d.headers,
		BodyDiffers:   d.body,
		PrimaryBody:   primary.prefix,
		MirrorBody:    shadow.prefix,
	}
}

// clip bounds a string an example keeps to PrefixLen bytes.
func clip(s string) string {
	if len(s) > PrefixLen {
		return s[:PrefixLen]
	}
	return s
}
