package tcp

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stuckTimeout turns a hang into a failure; it is never expected to pass.
const stuckTimeout = 10 * time.Second

func TestForwardCopiesBothWaysIntact(t *testing.T) {
	const toServer, toClient = 4 << 20, 3 << 20
	for _, counted := range []bool{true, false} {
		name := map[bool]string{true: "counted", false: "uncounted (splice)"}[counted]
		t.Run(name, func(t *testing.T) {
			var counters *testCounters
			var c Counters
			if counted {
				counters = &testCounters{}
				c = counters
			}
			client, server, result := forwardOnce(t, context.Background(), c)

			var wg sync.WaitGroup
			var sentByClient, gotByServer, sentByServer, gotByClient [32]byte
			wg.Go(func() { sentByClient = sendRandom(t, client, toServer) })
			wg.Go(func() { sentByServer = sendRandom(t, server, toClient) })
			wg.Go(func() { gotByServer = receiveAll(t, server, toServer) })
			wg.Go(func() { gotByClient = receiveAll(t, client, toClient) })
			wg.Wait()

			if gotByServer != sentByClient {
				t.Error("bytes from client to server differ")
			}
			if gotByClient != sentByServer {
				t.Error("bytes from server to client differ")
			}
			res := waitResult(t, result)
			if res.err != nil {
				t.Errorf("Forward: %v", res.err)
			}
			if want := (Stats{Read: toServer, Written: toClient}); res.stats != want {
				t.Errorf("Stats = %+v, want %+v", res.stats, want)
			}
			if counters != nil && (counters.read.Load() != toServer || counters.write.Load() != toClient) {
				t.Errorf("counters read=%d write=%d, want %d and %d",
					counters.read.Load(), counters.write.Load(), toServer, toClient)
			}
		})
	}
}

func TestForwardPropagatesHalfClose(t *testing.T) {
	for _, c := range []Counters{&testCounters{}, nil} {
		client, server, result := forwardOnce(t, context.Background(), c)
		go func() {
			// The server answers only once it has seen the client's EOF.
			req, err := io.ReadAll(server)
			if err != nil || string(req) != "ping" {
				t.Errorf("server read %q, %v; want ping then EOF", req, err)
			}
			server.Write([]byte("pong"))
			server.Close()
		}()
		client.Write([]byte("ping"))
		if err := client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, err := io.ReadAll(client)
		if err != nil || string(resp) != "pong" {
			t.Errorf("client read %q, %v; want pong after its half-close", resp, err)
		}
		if res := waitResult(t, result); res.err != nil || res.stats != (Stats{Read: 4, Written: 4}) {
			t.Errorf("Forward = %+v, %v; want 4 bytes each way, no error", res.stats, res.err)
		}
	}
}

func TestForwardServerSpeaksFirst(t *testing.T) {
	client, server, result := forwardOnce(t, context.Background(), &testCounters{})
	go func() {
		server.Write([]byte("220 ready\r\n"))
		line, err := bufio.NewReader(server).ReadString('\n')
		if err != nil || line != "QUIT\r\n" {
			t.Errorf("server read %q, %v", line, err)
		}
		server.Write([]byte("221 bye\r\n"))
		server.Close()
	}()
	r := bufio.NewReader(client)
	if banner, err := r.ReadString('\n'); err != nil || banner != "220 ready\r\n" {
		t.Fatalf("client read banner %q, %v", banner, err)
	}
	client.Write([]byte("QUIT\r\n"))
	if rest, err := io.ReadAll(r); err != nil || string(rest) != "221 bye\r\n" {
		t.Errorf("client read %q, %v", rest, err)
	}
	client.Close()
	if res := waitResult(t, result); res.err != nil {
		t.Errorf("Forward: %v", res.err)
	}
}

func TestForwardCancelClosesBoth(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client, server, result := forwardOnce(t, ctx, nil)
	client.Write([]byte("x"))
	if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if res := waitResult(t, result); !errors.Is(res.err, context.Canceled) {
		t.Errorf("Forward error = %v, want context.Canceled", res.err)
	}
	assertClosedByPeer(t, "client", client)
	assertClosedByPeer(t, "server", server)
}

func TestForwardCountsWhileOpen(t *testing.T) {
	counters := &testCounters{}
	client, server, result := forwardOnce(t, context.Background(), counters)

	client.Write(make([]byte, 100))
	if _, err := io.ReadFull(server, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	// Reads are counted before they are forwarded.
	if got := counters.read.Load(); got != 100 {
		t.Errorf("read counter = %d while open, want 100", got)
	}
	server.Write(make([]byte, 50))
	if _, err := io.ReadFull(client, make([]byte, 50)); err != nil {
		t.Fatal(err)
	}
	// Writes are counted just after the client could already see them.
	waitFor(t, "write counter = 50", func() bool { return counters.write.Load() == 50 })

	client.Close()
	server.Close()
	waitResult(t, result)
}

func TestForwardIdleTimeoutClosesBoth(t *testing.T) {
	client, server, result := forwardOnce(t, context.Background(), nil, WithIdleTimeout(50*time.Millisecond))
	if res := waitResult(t, result); !errors.Is(res.err, ErrIdleTimeout) {
		t.Errorf("Forward error = %v, want ErrIdleTimeout", res.err)
	}
	assertClosedByPeer(t, "client", client)
	assertClosedByPeer(t, "server", server)
}

func TestForwardOneWayTrafficIsNotIdle(t *testing.T) {
	// The client never sends: only the server's stream keeps the connection alive.
	const idle, sends, every = 500 * time.Millisecond, 40, 25 * time.Millisecond
	client, server, result := forwardOnce(t, context.Background(), nil, WithIdleTimeout(idle))
	go func() {
		for range sends {
			server.Write([]byte{'.'})
			time.Sleep(every)
		}
	}()
	if _, err := io.ReadFull(client, make([]byte, sends)); err != nil {
		t.Fatalf("client lost the stream after %v of one-way traffic: %v", sends*every, err)
	}
	if res := waitResult(t, result); !errors.Is(res.err, ErrIdleTimeout) {
		t.Errorf("Forward error = %v, want ErrIdleTimeout once the stream stopped", res.err)
	}
}

func TestForwardBlockedWriteIsIdle(t *testing.T) {
	// The server never reads: once the buffers are full the forwarding's
	// write to it blocks, and no byte moves either way.
	client, _, result := forwardOnce(t, context.Background(), nil, WithIdleTimeout(200*time.Millisecond))
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := client.Write(chunk); err != nil {
				return
			}
		}
	}()
	if res := waitResult(t, result); !errors.Is(res.err, ErrIdleTimeout) {
		t.Errorf("Forward error = %v, want ErrIdleTimeout while its write was blocked", res.err)
	}
}

type testCounters struct{ read, write atomic.Int64 }

func (c *testCounters) AddRead(n int)  { c.read.Add(int64(n)) }
func (c *testCounters) AddWrite(n int) { c.write.Add(int64(n)) }

type forwardResult struct {
	stats Stats
	err   error
}

// forwardOnce connects a client through Forward to a server, all over
// loopback TCP, and returns both ends and Forward's eventual result.
func forwardOnce(t testing.TB, ctx context.Context, c Counters, opts ...Option) (client, server *net.TCPConn, result <-chan forwardResult) {
	t.Helper()
	upstreamLn := listen(t)
	proxyLn := listen(t)

	client = dial(t, proxyLn.Addr())
	downstream := accept(t, proxyLn)
	upstream := dial(t, upstreamLn.Addr())
	server = accept(t, upstreamLn)
	if _, ok := t.(*testing.T); ok {
		// Turn a hang (say, a lost half-close) into a failure.
		client.SetDeadline(time.Now().Add(stuckTimeout))
		server.SetDeadline(time.Now().Add(stuckTimeout))
	}

	results := make(chan forwardResult, 1)
	go func() {
		stats, err := Forward(ctx, downstream, upstream, c, opts...)
		results <- forwardResult{stats, err}
	}()
	return client, server, results
}

func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t testing.TB, addr net.Addr) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, addr.(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func accept(t testing.TB, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendRandom writes n random bytes, half-closes and returns their hash.
func sendRandom(t *testing.T, c *net.TCPConn, n int) [32]byte {
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(c, h), rand.Reader, int64(n)); err != nil {
		t.Errorf("sending: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Errorf("half-closing: %v", err)
	}
	return [32]byte(h.Sum(nil))
}

// receiveAll reads until EOF and returns the hash of what it read.
func receiveAll(t *testing.T, c *net.TCPConn, want int64) [32]byte {
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil || n != want {
		t.Errorf("received %d bytes, %v; want %d then EOF", n, err, want)
	}
	return [32]byte(h.Sum(nil))
}

func waitResult(t testing.TB, result <-chan forwardResult) forwardResult {
	t.Helper()
	select {
	case res := <-result:
		return res
	case <-time.After(stuckTimeout):
		t.Fatal("Forward did not return")
		return forwardResult{}
	}
}

func assertClosedByPeer(t *testing.T, name string, c *net.TCPConn) {
	t.Helper()
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("%s was not closed by the proxy", name)
	case n != 0 || err == nil:
		t.Errorf("%s read %d bytes, %v; want EOF or reset from the closed proxy", name, n, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(stuckTimeout); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
