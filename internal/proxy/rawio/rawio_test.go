package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// tcpPair returns the two ends of a loopback TCP connection, each made raw.
func tcpPair(t *testing.T) (c1, c2 net.Conn, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-accepted
	if a == nil {
		t.Fatal("accept failed")
	}
	c1, c2 = Wrap(d), Wrap(a)
	if _, ok := c1.(*Conn); !ok {
		t.Fatalf("Wrap(%T) = %T, want *Conn", d, c1)
	}
	return c1, c2, func() { c1.Close(); c2.Close() }
}

// TestConnKeepsNetConnsContract runs x/net's net.Conn conformance suite
// (basic I/O, ping-pong, racing reads and writes, deadlines, Close
// unblocking a blocked call, concurrent method calls) on raw connections.
func TestConnKeepsNetConnsContract(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		c1, c2, stop = tcpPair(t)
		return c1, c2, stop, nil
	})
}

// TestErrorsAreNetConnsErrors checks the errors callers test for: io.EOF at
// the end, a timeout at a deadline, net.ErrClosed after Close, and a reset
// by the peer as the errno net.Conn would give.
func TestErrorsAreNetConnsErrors(t *testing.T) {
	c1, c2, stop := tcpPair(t)
	defer stop()

	if _, err := c2.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c2.(*Conn).CloseWrite()
	buf := make([]byte, 8)
	if n, err := c1.Read(buf); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v; want 1, nil", n, err)
	}
	if _, err := c1.Read(buf); err != io.EOF {
		t.Fatalf("Read after the peer's CloseWrite: %v, want io.EOF", err)
	}

	c3, c4, stop2 := tcpPair(t)
	defer stop2()
	c3.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c3.Read(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read past its deadline: %#v, want a *net.OpError of op read", err)
	}

	c4.(*Conn).SetLinger(0)
	c4.Close()
	c3.SetReadDeadline(time.Time{})
	if _, err := c3.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after the peer's reset: %v, want ECONNRESET", err)
	}
	c3.Close()
	if _, err := c3.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// TestWriteWaitsForTheReader writes more than the socket buffers hold, so
// that the write must wait in the netpoller (EAGAIN) and resume.
func TestWriteWaitsForTheReader(t *testing.T) {
	c1, c2, stop := tcpPair(t)
	defer stop()
	want := make([]byte, 32<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	read := make(chan []byte, 1)
	go func() {
		got, _ := io.ReadAll(io.LimitReader(c2, int64(len(want))))
		read <- got
	}()
	n, err := c1.Write(want)
	if err == nil && n != len(want) {
		err = io.ErrShortWrite
	}
	if err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	got := <-read
	if string(got) != string(want) {
		t.Fatal("bytes read differ from bytes written")
	}
}

// TestWrapLeavesOtherConnsAlone: only a *net.TCPConn is made raw.
func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe", got)
	}
	c1, _, stop := tcpPair(t)
	defer stop()
	if got := Wrap(c1); got != c1 {
		t.Fatal("Wrap of a raw Conn wrapped it again")
	}
}
