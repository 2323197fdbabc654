package stack

import "strings"

// Field is one header field. Names are lower case, as HTTP/2 requires; the
// HTTP/1 engine lower-cases what it reads.
type Field struct {
	Name  string
	Value string
}

// Header is a header list in the order it arrived, pseudo-headers and
// connection-specific fields (Connection, Keep-Alive, Transfer-Encoding,
// ...) left out: the engines deal with those. A name may repeat.
type Header []Field

// Get returns the first value of name (lower case), or "".
func (h Header) Get(name string) string {
	for i := range h {
		if h[i].Name == name {
			return h[i].Value
		}
	}
	return ""
}

// Has reports whether name (lower case) is present.
func (h Header) Has(name string) bool {
	for i := range h {
		if h[i].Name == name {
			return true
		}
	}
	return false
}

// Add appends a field.
func (h *Header) Add(name, value string) {
	*h = append(*h, Field{Name: name, Value: value})
}

// Set replaces every value of name (lower case) with value.
func (h *Header) Set(name, value string) {
	for i := range *h {
		if (*h)[i].Name == name {
			(*h)[i].Value = value
			h.delFrom(name, i+1)
			return
		}
	}
	h.Add(name, value)
}

// Del removes every field named name (lower case).
func (h *Header) Del(name string) { h.delFrom(name, 0) }

func (h *Header) delFrom(name string, from int) {
	out := (*h)[:from]
	for _, f := range (*h)[from:] {
		if f.Name != name {
			out = append(out, f)
		}
	}
	clear((*h)[len(out):])
	*h = out
}

// Clone returns a copy that shares no storage with h.
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	return append(Header(nil), h...)
}

// IsGRPC reports whether a content type is gRPC's (application/grpc,
// application/grpc+proto, ...).
func IsGRPC(contentType string) bool {
	const grpc = "application/grpc"
	return len(contentType) >= len(grpc) && strings.EqualFold(contentType[:len(grpc)], grpc) &&
		(len(contentType) == len(grpc) || contentType[len(grpc)] == '+' || contentType[len(grpc)] == ';')
}
