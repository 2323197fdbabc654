package h1

import (
	"strings"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// framing is how a request's body is delimited and what the connection
// does after it.
type framing struct {
	contentLength int64 // -1: none
	chunked       bool
	minor         int  // HTTP/1.minor
	keepAlive     bool // the connection may carry another request
	upgrade       bool // asks to switch protocols, Upgrade kept
	connect       bool
	expect100     bool
}

func (f framing) hasBody() bool { return f.chunked || f.contentLength > 0 }

// requestAlloc is a request, its body and its first fields in one
// allocation.
type requestAlloc struct {
	req    stack.Request
	body   bodyReader
	fields [fieldsInline]stack.Field
}

// parseRequest parses a request head as readHead returned it.
func parseRequest(head []byte) (*requestAlloc, framing, error) {
	firstEnd := indexCRLF(head)
	count, err := checkFields(head, firstEnd+2)
	if err != nil {
		return nil, framing{}, err
	}
	s := string(head)
	method, rest, ok1 := strings.Cut(s[:firstEnd], " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || !validTarget(target) {
		return nil, framing{}, badMessage("malformed request line")
	}
	var fr framing
	if fr.minor, err = parseVersion(version); err != nil {
		return nil, fr, err
	}
	m := &requestAlloc{}
	f, err := parseFields(s, firstEnd+2, count, m.fields[:0])
	if err != nil {
		return nil, fr, err
	}
	req := &m.req
	*req = stack.Request{Method: method, Scheme: "http", Header: f.header, ProtoMajor: 1, Body: stack.NoBody}
	switch {
	case method == "CONNECT":
		if strings.HasPrefix(target, "/") || strings.Contains(target, "/") {
			return nil, fr, badMessage("CONNECT target is not host:port")
		}
		req.Authority, fr.connect = target, true
	case target[0] == '/':
		req.Path = target
	case target == "*" && method == "OPTIONS":
		req.Path = target
	default:
		scheme, authority, path, ok := splitAbsolute(target)
		if !ok {
			return nil, fr, badMessage("malformed request target")
		}
		req.Scheme, req.Authority, req.Path = scheme, authority, path
	}
	if f.hosts > 1 || f.hosts == 0 && fr.minor == 1 {
		return nil, fr, badMessage("missing or repeated Host")
	}
	if req.Authority == "" {
		req.Authority = f.host
	}
	fr.contentLength, fr.chunked = f.contentLength, f.chunked
	if fr.chunked && fr.minor == 0 {
		return nil, fr, badMessage("Transfer-Encoding in HTTP/1.0")
	}
	if fr.connect && fr.hasBody() {
		return nil, fr, badMessage("CONNECT with a body")
	}
	fr.keepAlive = fr.minor == 1 && !f.connClose
	fr.upgrade = fr.minor == 1 && f.connUpgrade && !fr.connect && !fr.hasBody() && req.Header.Has("upgrade")
	if !fr.upgrade {
		req.Header.Del("upgrade")
	}
	if f.expect != "" {
		if !strings.EqualFold(f.expect, "100-continue") {
			return nil, fr, &protoError{status: 417, msg: "unsupported Expect"}
		}
		fr.expect100 = fr.minor == 1 && fr.hasBody()
	}
	return m, fr, nil
}

// validTarget reports whether a request target holds only visible ASCII.
func validTarget(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return false
		}
	}
	return true
}

// splitAbsolute splits an absolute-form target (http://host/path).
func splitAbsolute(t string) (scheme, authority, path string, ok bool) {
	i := strings.Index(t, "://")
	if i <= 0 {
		return "", "", "", false
	}
	scheme = strings.ToLower(t[:i])
	if scheme != "http" && scheme != "https" {
		return "", "", "", false
	}
	rest := t[i+3:]
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, path = rest[:end], rest[end:]
	if authority == "" || strings.Contains(authority, "@") {
		return "", "", "", false
	}
	if path == "" || path[0] == '?' {
		path = "/" + path
	}
	return scheme, authority, path, true
}
