package redact

import (
	"bytes"
	"encoding/json"
	"strings"
)

// maxJSONDepth bounds how deep the scanner follows nested values; past it
// the prefix is cut.
const maxJSONDepth = 64

// redactJSON copies in, byte for byte, but for the values of object fields
// named in fields (lower case), which become "[REDACTED]". It stops at the
// first byte it does not understand, or where in ends, leaving out
// anything it could not place (a key cut short, which might be a hidden
// one): cut reports that it stopped before the end.
func redactJSON(in []byte, fields map[string]bool) (out []byte, cut bool) {
	s := jsonScanner{in: in, fields: fields, out: make([]byte, 0, len(in))}
	for {
		s.space()
		if s.i == len(in) {
			return s.out, false
		}
		if c := in[s.i]; c != '{' && c != '[' {
			return s.out, true
		}
		if !s.value(0) {
			return s.out, true
		}
	}
}

type jsonScanner struct {
	in     []byte
	i      int
	out    []byte
	fields map[string]bool
}

// space copies white space.
func (s *jsonScanner) space() {
	for s.i < len(s.in) {
		switch s.in[s.i] {
		case ' ', '\t', '\r', '\n':
			s.out = append(s.out, s.in[s.i])
			s.i++
		default:
			return
		}
	}
}

// value copies one value; false when the input ended inside it or it is
// not JSON (what was copied is then safe to show).
func (s *jsonScanner) value(depth int) bool {
	s.space()
	if s.i == len(s.in) || depth > maxJSONDepth {
		return false
	}
	switch c := s.in[s.i]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		end, ok := stringEnd(s.in, s.i)
		s.out = append(s.out, s.in[s.i:end]...)
		s.i = end
		return ok
	case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
		start := s.i
		for s.i < len(s.in) && isLiteralByte(s.in[s.i]) {
			s.i++
		}
		s.out = append(s.out, s.in[start:s.i]...)
		return s.i < len(s.in)
	}
	return false
}

func isLiteralByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// object copies an object, member by member.
func (s *jsonScanner) object(depth int) bool {
	return s.list('{', '}', func() bool { return s.member(depth) })
}

// array copies an array, value by value.
func (s *jsonScanner) array(depth int) bool {
	return s.list('[', ']', func() bool { return s.value(depth) })
}

// list copies what opens with open and closes with close: items separated
// by commas, each copied by item.
func (s *jsonScanner) list(open, close byte, item func() bool) bool {
	s.out = append(s.out, open)
	s.i++
	for first := true; ; first = false {
		s.space()
		if s.i == len(s.in) {
			return false
		}
		if s.in[s.i] == close {
			s.out = append(s.out, close)
			s.i++
			return true
		}
		if !first {
			if s.in[s.i] != ',' {
				return false
			}
			s.out = append(s.out, ',')
			s.i++
			s.space()
		}
		if !item() {
			return false
		}
	}
}

// member copies one "key": value, the value hidden when the key is in
// fields. A key cut short is left out: it might be a hidden one.
func (s *jsonScanner) member(depth int) bool {
	if s.i == len(s.in) || s.in[s.i] != '"' {
		return false
	}
	end, ok := stringEnd(s.in, s.i)
	if !ok {
		return false
	}
	key, ok := unquote(s.in[s.i:end])
	if !ok {
		return false
	}
	s.out = append(s.out, s.in[s.i:end]...)
	s.i = end
	s.space()
	if s.i == len(s.in) || s.in[s.i] != ':' {
		return false
	}
	s.out = append(s.out, ':')
	s.i++
	s.space()
	if !s.fields[strings.ToLower(key)] {
		return s.value(depth)
	}
	if s.i == len(s.in) {
		return false
	}
	mark := len(s.out)
	complete := s.value(depth)
	s.out = append(s.out[:mark], `"`+Redacted+`"`...)
	return complete
}

// stringEnd returns the index just past the string that opens at in[i]
// (a '"'), and whether it closes before in ends.
func stringEnd(in []byte, i int) (int, bool) {
	for j := i + 1; j < len(in); j++ {
		switch in[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(in), false
}

// unquote decodes a JSON string with its quotes, escapes included, so
// that "pass\u0077ord" is seen as the password field it is.
func unquote(quoted []byte) (string, bool) {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1]), true
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", false
	}
	return s, true
}
