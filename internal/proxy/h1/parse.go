package h1

import (
	"bufio"
	"io"
	"strings"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// protoError is a malformed or refused message; status is what a server
// answers it with.
type protoError struct {
	status int
	msg    string
}

func (e *protoError) Error() string { return e.msg }

func badMessage(msg string) error { return &protoError{status: 400, msg: msg} }

var (
	errHeadTooLarge = &protoError{status: 431, msg: "header fields too large"}
	errLineTooLong  = &protoError{status: 414, msg: "request line too long"}
	errBareLF       = badMessage("line not ended by CRLF")
)

// readHead reads a message head, up to and including the empty line, into
// buf (reused) and returns it. It never holds more than maxHead bytes; the
// first line may be at most maxFirstLine long. Empty lines before the first
// line are skipped (RFC 9112 2.2), at most a few.
func readHead(br *bufio.Reader, buf []byte, maxHead, maxFirstLine int) ([]byte, error) {
	buf = buf[:0]
	lineStart, skipped := 0, 0
	first := true
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > maxHead {
			if first {
				return buf, errLineTooLong
			}
			return buf, errHeadTooLarge
		}
		buf = append(buf, frag...)
		if first && len(buf)-lineStart > maxFirstLine {
			return buf, errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
		line := buf[lineStart:]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return buf, errBareLF
		}
		if len(line) == 2 {
			if !first {
				return buf, nil
			}
			if skipped++; skipped > 4 {
				return buf, badMessage("empty lines before the request line")
			}
			buf = buf[:lineStart]
			continue
		}
		first = false
		lineStart = len(buf)
	}
}

// checkFields validates the field lines of a head from offset i (past the
// first line; 0 for a trailer block) to its empty line, and lower-cases the
// names in place. It returns the number of fields. No obs-fold, no
// whitespace before the colon, names are tokens, values hold no control
// characters but HTAB.
func checkFields(head []byte, i int) (int, error) {
	n := 0
	for i < len(head)-2 {
		end := i + indexCRLF(head[i:])
		line := head[i:end]
		if line[0] == ' ' || line[0] == '\t' {
			return 0, badMessage("obsolete line folding")
		}
		colon := -1
		for j, c := range line {
			if c == ':' {
				colon = j
				break
			}
			if !isTokenChar[c] {
				return 0, badMessage("invalid header field name")
			}
			if 'A' <= c && c <= 'Z' {
				line[j] = c + ('a' - 'A')
			}
		}
		if colon <= 0 {
			return 0, badMessage("invalid header field")
		}
		for _, c := range line[colon+1:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, badMessage("invalid header field value")
			}
		}
		n++
		i = end + 2
	}
	return n, nil
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return len(b)
}

// fields is what the engine learns from a head's fields beyond the
// stack.Header it hands on.
type fields struct {
	header        stack.Header
	contentLength int64 // -1: none
	chunked       bool
	connClose     bool
	connKeepAlive bool
	connUpgrade   bool
	connNamed     []string // other fields Connection names: dropped
	host          string
	hosts         int
	expect        string
}

// parseFields builds the fields of s, a head checked by checkFields, from
// offset i. Hop-by-hop fields are dropped (Upgrade is kept for the caller
// to decide), Host goes to f.host.
func parseFields(s string, i, count int, buf stack.Header) (fields, error) {
	if cap(buf) < count {
		buf = make(stack.Header, 0, count)
	}
	f := fields{contentLength: -1, header: buf[:0]}
	for i < len(s)-2 {
		end := i + strings.Index(s[i:], "\r\n")
		line := s[i:end]
		i = end + 2
		colon := strings.IndexByte(line, ':')
		name, value := line[:colon], trimOWS(line[colon+1:])
		switch name {
		case "host":
			f.host, f.hosts = value, f.hosts+1
		case "content-length":
			n, ok := parseContentLength(value)
			if !ok {
				return f, badMessage("invalid Content-Length")
			}
			if f.contentLength >= 0 {
				if f.contentLength != n {
					return f, badMessage("differing Content-Lengths")
				}
				continue
			}
			f.contentLength = n
			f.header = append(f.header, stack.Field{Name: name, Value: value})
		case "transfer-encoding":
			if f.chunked || !strings.EqualFold(value, "chunked") {
				return f, badMessage("unsupported Transfer-Encoding")
			}
			f.chunked = true
		case "connection":
			f.parseConnection(value)
		case "expect":
			f.expect = value
		case "keep-alive", "proxy-connection", "te", "trailer", "proxy-authenticate", "proxy-authorization":
		default:
			f.header = append(f.header, stack.Field{Name: name, Value: value})
		}
	}
	if f.chunked && f.contentLength >= 0 {
		return f, badMessage("both Content-Length and Transfer-Encoding")
	}
	for _, name := range f.connNamed {
		f.header.Del(name)
	}
	return f, nil
}

func (f *fields) parseConnection(value string) {
	for value != "" {
		var token string
		token, value, _ = strings.Cut(value, ",")
		token = trimOWS(token)
		switch {
		case token == "":
		case strings.EqualFold(token, "close"):
			f.connClose = true
		case strings.EqualFold(token, "keep-alive"):
			f.connKeepAlive = true
		case strings.EqualFold(token, "upgrade"):
			f.connUpgrade = true
		default:
			f.connNamed = append(f.connNamed, strings.ToLower(token))
		}
	}
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// parseVersion reads "HTTP/1.1" or "HTTP/1.0"; another well-formed version
// is errVersion (505), anything else malformed.
func parseVersion(v string) (minor int, err error) {
	switch v {
	case "HTTP/1.1":
		return 1, nil
	case "HTTP/1.0":
		return 0, nil
	}
	if len(v) == 8 && strings.HasPrefix(v, "HTTP/") && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]) {
		return 0, errVersion
	}
	return 0, badMessage("malformed HTTP version")
}

var errVersion = &protoError{status: 505, msg: "HTTP version not supported"}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTokenChar is RFC 9110's tchar.
var isTokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar[s[i]] {
			return false
		}
	}
	return true
}
