package h1

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// rawReaders keeps one bufio.Reader per raw connection so that responses
// read one after another share what was buffered.
var rawReaders = map[net.Conn]*bufio.Reader{}

func readResponse(t testing.TB, c net.Conn, method string) *http.Response {
	t.Helper()
	br, ok := rawReaders[c]
	if !ok {
		br = bufio.NewReader(c)
		rawReaders[c] = br
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return resp
}

// loopbackPair connects a client to srv.ServeConn over loopback TCP.
func loopbackPair(t *testing.T, srv *Server) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	c := dialRaw(t, ln.Addr().String())
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeConn(sc, &stack.ConnInfo{})
	return c
}
