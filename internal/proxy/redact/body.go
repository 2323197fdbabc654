package redact

import (
	"fmt"
	"regexp"
	"strings"
)

// Body hides, in a body prefix, the values of JSON object fields by name
// and every match of RE2 patterns. The zero value hides nothing.
type Body struct {
	fields   map[string]bool // lower case
	patterns []*regexp.Regexp
}

// NewBody compiles the rules: JSON fields (compared case-insensitively, at
// any depth) and RE2 patterns. A pattern that does not compile is an error
// naming it.
func NewBody(jsonFields, patterns []string) (*Body, error) {
	b := &Body{}
	if len(jsonFields) > 0 {
		b.fields = make(map[string]bool, len(jsonFields))
		for _, f := range jsonFields {
			b.fields[strings.ToLower(f)] = true
		}
	}
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("redact pattern %q: %w", p, err)
		}
		b.patterns = append(b.patterns, re)
	}
	return b, nil
}

// Apply returns prefix with the hidden values replaced by Redacted; prefix
// is not changed. JSON fields are hidden when prefix is JSON (its first
// byte past white space opens an object or an array; a stream of JSON
// values is read one after the other). prefix may be cut anywhere, even
// inside a value of a hidden field: what follows the last point the
// scanner understood is left out, so cut reports that the result is
// shorter than what was given. Patterns then apply to what is left (a
// match the cut went through is not seen).
func (b *Body) Apply(prefix []byte) (out []byte, cut bool) {
	out = prefix
	if len(b.fields) > 0 && looksLikeJSON(prefix) {
		out, cut = redactJSON(prefix, b.fields)
	}
	for _, re := range b.patterns {
		out = re.ReplaceAllLiteral(out, []byte(Redacted))
	}
	if len(b.fields) == 0 && len(b.patterns) == 0 {
		out = append([]byte(nil), prefix...)
	}
	return out, cut
}

func looksLikeJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}
