package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The attacks that make the proxy hold things: answers a client will not
// read, streams, and connections that never finish a request (see
// underAttack).

// TestH2ZeroWindowStallHoldsNoResponses: a client whose stream window is
// 0 and that never opens it asks for 1 MiB answers on 100 streams on each
// of two connections (200 MiB the proxy could be made to hold).
func TestH2ZeroWindowStallHoldsNoResponses(t *testing.T) {
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		var streams atomic.Int64
		var conns []*rawH2
		var mu sync.Mutex
		attackFor(ctx, 2, 10*time.Second, func(ctx context.Context, _ int) {
			c, err := dialRawH2(ctx, side.from, side.target, true, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			c.write(func(fr *http2.Framer) error {
				for id := uint32(1); id < 200; id += 2 {
					if err := c.get(fr, id, "/stall?size=1048576"); err != nil {
						return err
					}
					streams.Add(1)
				}
				return nil
			})
		})
		time.Sleep(6 * time.Second) // the answers are all there to be buffered
		for _, c := range conns {
			c.Close()
		}
		t.Logf("%d streams asked for 1 MiB each and never opened their window", streams.Load())
	})
}

// TestH2TooManyStreamsAreRefused: 1,500 held requests opened at once on
// one connection, past the proxy's advertised MAX_CONCURRENT_STREAMS. The
// streams past the limit must be refused, and the application never holds
// more than the limit.
func TestH2TooManyStreamsAreRefused(t *testing.T) {
	w := getWire(t)
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		path := "/hold/streams-" + side.name
		c, err := dialRawH2(ctx, side.from, side.target, true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const opened = 1500
		err = c.write(func(fr *http2.Framer) error {
			for id := uint32(1); id < 2*opened; id += 2 {
				if err := c.get(fr, id, path); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("opening %d streams: %v", opened, err)
		}
		time.Sleep(5 * time.Second) // the accepted ones reach the application
		limit := c.maxStreams.Load()
		seen := w.app.counter(path).Load()
		t.Logf("%d streams opened; the proxy advertised MAX_CONCURRENT_STREAMS %d, reset %d, GOAWAY %v; the application holds %d",
			opened, limit, c.refused.Load(), c.goAway.Load() != 0, seen)
		if limit < 0 || limit >= opened {
			t.Fatalf("the proxy advertised MAX_CONCURRENT_STREAMS %d: the test needs a limit under %d", limit, opened)
		}
		if seen > limit {
			t.Errorf("the application holds %d requests from one connection, past the advertised limit of %d", seen, limit)
		}
		if c.goAway.Load() == 0 && c.refused.Load() < opened-limit {
			t.Errorf("the proxy reset %d streams and sent no GOAWAY; want the %d past the limit refused", c.refused.Load(), opened-limit)
		}
	})
}

// TestH2SlowlorisHoldsLittle: 100 connections that send the preface and
// SETTINGS and then nothing, and 100 that send half a header block and then
// nothing, held for 6 s.
func TestH2SlowlorisHoldsLittle(t *testing.T) {
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		var conns []*rawH2
		for i := range 200 {
			c, err := dialRawH2(ctx, side.from, side.target, true)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			defer c.Close()
			conns = append(conns, c)
			if i%2 == 1 {
				c.write(func(fr *http2.Framer) error {
					b := c.block("/slowloris", hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("p", 100)})
					return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:len(b)/2]})
				})
			}
		}
		time.Sleep(6 * time.Second)
		closed := [2]int{}
		for i, c := range conns {
			if c.closed() {
				closed[i%2]++
			}
		}
		t.Logf("after 6 s the proxy had closed %d of 100 silent connections and %d of 100 with half a header block", closed[0], closed[1])
	})
}

// TestHTTP1SlowlorisIsClosedAtTheHeaderTimeout: 100 HTTP/1.1 requests that
// trickle a header line a second must each be closed by the proxy's 10 s
// header timeout (the test allows 25 s).
func TestHTTP1SlowlorisIsClosedAtTheHeaderTimeout(t *testing.T) {
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		var closedIn [100]time.Duration
		attackFor(ctx, 100, 25*time.Second, func(ctx context.Context, i int) {
			c, err := dialer(side.from)(ctx, "tcp", side.target)
			if err != nil {
				t.Errorf("connection %d: %v", i, err)
				return
			}
			defer c.Close()
			start := time.Now()
			readDone := make(chan time.Duration, 1)
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						readDone <- time.Since(start)
						return
					}
				}
			}()
			fmt.Fprintf(c, "GET /slowloris HTTP/1.1\r\nHost: %s\r\n", side.target)
			for n := 0; ; n++ {
				select {
				case closedIn[i] = <-readDone:
					return
				case <-ctx.Done():
					c.Close() // still open: closedIn[i] stays 0
					<-readDone
					return
				case <-time.After(time.Second):
					fmt.Fprintf(c, "X-Trickle-%d: %d\r\n", n, n)
				}
			}
		})
		open, longest := 0, time.Duration(0)
		for _, d := range closedIn {
			if d == 0 {
				open++
			}
			longest = max(longest, d)
		}
		t.Logf("trickling connections closed by the proxy within %v; %d still open after 25 s", longest.Round(100*time.Millisecond), open)
		if open > 0 {
			t.Errorf("%d of 100 trickling connections were still open after 25 s, want each closed at the 10 s header timeout", open)
		}
	})
}
