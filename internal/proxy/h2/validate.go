package h2

import (
	"errors"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

var errMalformed = errors.New("h2: malformed header block")

// connectionSpecific are the fields RFC 9113 §8.2.2 forbids in HTTP/2.
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// validName reports whether name is a lower-case field name token.
func validName(name string) bool {
	if !httpguts.ValidHeaderFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// sendableField reports whether a field may go out in an HTTP/2 header
// block: what stack.Header promises, checked once more so that nothing a
// layer added makes the peer reset the stream.
func sendableField(name, value string) bool {
	if name == "" || name[0] == ':' || connectionSpecific(name) || name == "host" {
		return false
	}
	if name == "te" && value != "trailers" {
		return false
	}
	return true
}

// regularField checks one regular field of a received block and keeps it in
// h (host is dropped: :authority carries it).
func regularField(hf hpack.HeaderField, h *stack.Header) error {
	if !validName(hf.Name) || !httpguts.ValidHeaderFieldValue(hf.Value) || connectionSpecific(hf.Name) {
		return errMalformed
	}
	if hf.Name == "te" && !strings.EqualFold(hf.Value, "trailers") {
		return errMalformed
	}
	*h = append(*h, stack.Field{Name: hf.Name, Value: hf.Value})
	return nil
}

// parseRequest checks a request header block as RFC 9113 §8.3 says and
// fills req; it returns the content-length, -1 when absent.
func parseRequest(fields []hpack.HeaderField, connectProtocol bool, req *stack.Request) (int64, error) {
	var seen uint8 // bits: method, scheme, authority, path, protocol
	var host string
	regular := false
	cl := int64(-1)
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			if regular {
				return 0, errMalformed
			}
			var bit uint8
			switch hf.Name {
			case ":method":
				bit, req.Method = 1, hf.Value
			case ":scheme":
				bit, req.Scheme = 2, hf.Value
			case ":authority":
				bit, req.Authority = 4, hf.Value
			case ":path":
				bit, req.Path = 8, hf.Value
			case ":protocol":
				bit, req.Protocol = 16, hf.Value
			default:
				return 0, errMalformed
			}
			if seen&bit != 0 {
				return 0, errMalformed
			}
			seen |= bit
			continue
		}
		regular = true
		switch hf.Name {
		case "host":
			if !httpguts.ValidHostHeader(hf.Value) {
				return 0, errMalformed
			}
			host = hf.Value
			continue
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || cl >= 0 && cl != n {
				return 0, errMalformed
			}
			cl = n
		}
		if err := regularField(hf, &req.Header); err != nil {
			return 0, err
		}
	}
	if seen&1 == 0 || !httpguts.ValidHeaderFieldName(req.Method) {
		return 0, errMalformed
	}
	if req.Authority == "" {
		req.Authority = host
	}
	switch {
	case req.Method == "CONNECT" && seen&16 == 0:
		if seen&(2|8) != 0 || req.Authority == "" {
			return 0, errMalformed
		}
	case seen&16 != 0:
		if !connectProtocol || req.Method != "CONNECT" || seen&(2|4|8) != 2|4|8 || req.Path == "" {
			return 0, errMalformed
		}
	default:
		if seen&(2|8) != 2|8 || req.Path == "" || req.Path[0] != '/' && !(req.Path == "*" && req.Method == "OPTIONS") {
			return 0, errMalformed
		}
	}
	return cl, nil
}

// parseResponse checks a response header block; status 0 with no error is
// never returned.
func parseResponse(fields []hpack.HeaderField, resp *stack.Response) (int64, error) {
	regular := false
	cl := int64(-1)
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			if regular || hf.Name != ":status" || resp.Status != 0 {
				return 0, errMalformed
			}
			n, err := strconv.Atoi(hf.Value)
			if err != nil || len(hf.Value) != 3 || n < 100 {
				return 0, errMalformed
			}
			resp.Status = n
			continue
		}
		regular = true
		if hf.Name == "content-length" {
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || cl >= 0 && cl != n {
				return 0, errMalformed
			}
			cl = n
		}
		if err := regularField(hf, &resp.Header); err != nil {
			return 0, err
		}
	}
	if resp.Status == 0 {
		return 0, errMalformed
	}
	return cl, nil
}

// parseTrailers checks a trailer block: no pseudo-headers.
func parseTrailers(fields []hpack.HeaderField) (stack.Header, error) {
	h := make(stack.Header, 0, len(fields))
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			return nil, errMalformed
		}
		if err := regularField(hf, &h); err != nil {
			return nil, err
		}
	}
	return h, nil
}
