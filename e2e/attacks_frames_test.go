package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The attacks made of frames no client should send: resets, floods,
// bombs and oversized frames and header lists (see underAttack).

// TestH2RapidResetIsCutOffAndSparesTheApplication (CVE-2023-44487):
// thousands of requests, each reset at once, on as many connections as it
// takes. The application must see under 1% of them, and no connection may
// carry 1,000 resets without being sent GOAWAY (issue 12: a reset rate per
// connection past which the peer gets GOAWAY).
func TestH2RapidResetIsCutOffAndSparesTheApplication(t *testing.T) {
	w := getWire(t)
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		path := "/reset/" + side.name
		// Each connection carries up to perConn resets, until want were
		// sent in all.
		const want, perConn, maxWithoutGoAway = 5000, 1500, 1000
		var sent, conns, goAways, unchecked atomic.Int64
		attackFor(ctx, 4, 20*time.Second, func(ctx context.Context, _ int) {
			for ctx.Err() == nil && sent.Load() < want {
				c, err := dialRawH2(ctx, side.from, side.target, true)
				if err != nil {
					return
				}
				conns.Add(1)
				resets := 0
				for id := uint32(1); ctx.Err() == nil && resets < perConn && !c.closed(); id += 2 * 50 {
					err := c.write(func(fr *http2.Framer) error {
						for s := id; s < id+2*50; s += 2 {
							if err := c.get(fr, s, path); err != nil {
								return err
							}
							if err := fr.WriteRSTStream(s, http2.ErrCodeCancel); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						break
					}
					sent.Add(50)
					resets += 50
				}
				// The server may still be working through what was
				// written: give it time to say GOAWAY and close.
				select {
				case <-c.done:
				case <-time.After(3 * time.Second):
				}
				if c.goAway.Load() != 0 {
					goAways.Add(1)
				} else if resets >= maxWithoutGoAway {
					unchecked.Add(1)
				}
				c.Close()
			}
		})
		time.Sleep(2 * time.Second) // let what got through reach the application
		seen := w.app.counter(path).Load()
		t.Logf("%d requests reset at once on %d connections (%d ended with GOAWAY); the application saw %d", sent.Load(), conns.Load(), goAways.Load(), seen)
		if sent.Load() < 1000 {
			t.Errorf("only %d resets were sent", sent.Load())
		}
		if seen*100 >= sent.Load() {
			t.Errorf("the application saw %d of %d reset requests, want under 1%%", seen, sent.Load())
		}
		if n := unchecked.Load(); n > 0 {
			t.Errorf("%d connections carried %d or more resets and got no GOAWAY", n, maxWithoutGoAway)
		}
	})
}

// TestH2ContinuationFloodIsCutOff: HEADERS without END_HEADERS, then
// CONTINUATION frames that never end the block.
func TestH2ContinuationFloodIsCutOff(t *testing.T) {
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		var bytesSent atomic.Int64
		attackFor(ctx, 4, 8*time.Second, func(ctx context.Context, _ int) {
			c, err := dialRawH2(ctx, side.from, side.target, true)
			if err != nil {
				return
			}
			defer c.Close()
			// Each fragment holds whole literal fields, so a server that
			// decodes as it goes keeps decoding.
			var frag []byte
			err = c.write(func(fr *http2.Framer) error {
				first := c.block("/continuation")
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first}); err != nil {
					return err
				}
				c.buf.Reset()
				for c.buf.Len() < 15<<10 {
					c.enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("c", 1000), Sensitive: true})
				}
				frag = append([]byte(nil), c.buf.Bytes()...)
				return nil
			})
			for err == nil && ctx.Err() == nil && bytesSent.Load() < 256<<20 && !c.closed() {
				err = c.write(func(fr *http2.Framer) error {
					for range 16 {
						if err := fr.WriteContinuation(1, false, frag); err != nil {
							return err
						}
					}
					return nil
				})
				bytesSent.Add(int64(16 * len(frag)))
			}
		})
		t.Logf("%d MiB of CONTINUATION sent", bytesSent.Load()>>20)
	})
}

// TestH2HPACKBombIsRefused: one 4 KB header put in the dynamic table, then
// header blocks that repeat its one-byte index 16,000 times (64 MB each).
func TestH2HPACKBombIsRefused(t *testing.T) {
	w := getWire(t)
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		path := "/bomb/" + side.name
		var blocks atomic.Int64
		attackFor(ctx, 4, 10*time.Second, func(ctx context.Context, _ int) {
			c, err := dialRawH2(ctx, side.from, side.target, true)
			if err != nil {
				return
			}
			defer c.Close()
			// The first block inserts :authority, :path and x-bomb, in that
			// order, so x-bomb is dynamic index 62 (0xbe indexed).
			err = c.write(func(fr *http2.Framer) error {
				return c.get(fr, 1, path, hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)})
			})
			for id := uint32(3); err == nil && ctx.Err() == nil && id < 400 && !c.closed(); id += 2 {
				err = c.write(func(fr *http2.Framer) error {
					b := append(append([]byte(nil), c.block(path)...), bytes.Repeat([]byte{0xbe}, 16000)...)
					return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: true, EndHeaders: true})
				})
				if err == nil {
					blocks.Add(1)
				}
			}
		})
		seen := w.app.counter(path).Load()
		t.Logf("%d bomb blocks sent (64 MB decoded each); the application saw %d requests", blocks.Load(), seen)
		if seen > 4 { // the four first requests are ordinary
			t.Errorf("the application saw %d requests, want at most the 4 ordinary ones: a bomb got through", seen)
		}
	})
}

// flood writes frames made by one on connections that never read, so the
// server's answers (SETTINGS and PING acks) pile up unread.
func flood(ctx context.Context, side attackSide, total int, one func(fr *http2.Framer, i int) error) int64 {
	var sent atomic.Int64
	attackFor(ctx, 4, 10*time.Second, func(ctx context.Context, _ int) {
		c, err := dialRawH2(ctx, side.from, side.target, false)
		if err != nil {
			return
		}
		defer c.Close()
		// Written faster than any server reads; the kernel's buffers hold
		// much of it, so keep the connection open while the server works
		// through them (and its unread answers pile up).
		defer time.Sleep(3 * time.Second)
		for i := 0; ctx.Err() == nil && i < total; i += 1000 {
			err := c.write(func(fr *http2.Framer) error {
				for j := range 1000 {
					if err := one(fr, i+j); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return
			}
			sent.Add(1000)
		}
	})
	return sent.Load()
}

// TestH2SettingsFloodIsCutOff: 100,000 SETTINGS frames per connection,
// whose acknowledgements the client never reads.
func TestH2SettingsFloodIsCutOff(t *testing.T) {
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		n := flood(ctx, side, 100000, func(fr *http2.Framer, i int) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i%2)})
		})
		t.Logf("%d SETTINGS frames written", n)
	})
}

// TestH2PingFloodIsCutOff: 100,000 PINGs per connection, acks never read.
func TestH2PingFloodIsCutOff(t *testing.T) {
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		n := flood(ctx, side, 100000, func(fr *http2.Framer, i int) error {
			return fr.WritePing(false, [8]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		})
		t.Logf("%d PING frames written", n)
	})
}

// TestH2WindowUpdateFloodIsCutOff: a held request, then 100,000
// WINDOW_UPDATE frames of 1 byte each on the connection and on the stream.
func TestH2WindowUpdateFloodIsCutOff(t *testing.T) {
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		n := flood(ctx, side, 100000, func(fr *http2.Framer, i int) error {
			if i == 0 {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: holdBlock(side), EndStream: true, EndHeaders: true})
			}
			return fr.WriteWindowUpdate(uint32(i%2), 1)
		})
		t.Logf("%d WINDOW_UPDATE frames written", n)
	})
}

// holdBlock is the header block of a GET /hold/<side>, from a fresh encoder.
func holdBlock(side attackSide) []byte {
	var b strings.Builder
	enc := hpack.NewEncoder(&b)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: side.target}, {Name: ":path", Value: "/hold/" + side.name},
	} {
		enc.WriteField(f)
	}
	return []byte(b.String())
}

// TestH2OversizedFramesAreRefused: frames longer than the 16 KiB any peer
// must accept before the server says more: a 1 MiB HEADERS frame (sent in
// full) and a DATA frame announcing 16 MiB, on 20 connections each.
func TestH2OversizedFramesAreRefused(t *testing.T) {
	w := getWire(t)
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		path := "/oversized/" + side.name
		var closed atomic.Int64
		attackFor(ctx, 40, 10*time.Second, func(ctx context.Context, i int) {
			c, err := dialRawH2(ctx, side.from, side.target, true)
			if err != nil {
				return
			}
			defer c.Close()
			c.write(func(fr *http2.Framer) error {
				if i%2 == 0 {
					block := append([]byte(nil), c.block(path)...)
					c.buf.Reset()
					for c.buf.Len() < 1<<20 {
						c.enc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("h", 1000), Sensitive: true})
					}
					block = append(block, c.buf.Bytes()...)
					return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true})
				}
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block(path), EndHeaders: true}); err != nil {
					return err
				}
				// A DATA frame header announcing 16 MiB - 1, and 1 MiB of it.
				if _, err := c.w.Write([]byte{0xff, 0xff, 0xff, byte(http2.FrameData), 0, 0, 0, 0, 1}); err != nil {
					return err
				}
				_, err := c.w.Write(make([]byte, 1<<20))
				return err
			})
			select {
			case <-c.done:
				closed.Add(1)
			case <-ctx.Done():
			}
		})
		seen := w.app.counter(path).Load()
		t.Logf("40 connections sent an oversized frame; %d closed by the proxy; the application saw %d requests", closed.Load(), seen)
		if seen > 20 { // the DATA frame's requests may start before it
			t.Errorf("the application saw %d requests, want none from the 1 MiB HEADERS frames", seen)
		}
	})
}

// TestH2OversizedHeaderListsAreRefused: header lists of 1 MiB in literal
// fields, each block split over HEADERS and CONTINUATION frames of 16 KiB,
// on 50 streams of each of 4 connections; none reaches the application.
func TestH2OversizedHeaderListsAreRefused(t *testing.T) {
	w := getWire(t)
	underAttack(t, func(t *testing.T, ctx context.Context, side attackSide) {
		path := "/big-headers/" + side.name
		var lists atomic.Int64
		attackFor(ctx, 4, 10*time.Second, func(ctx context.Context, _ int) {
			c, err := dialRawH2(ctx, side.from, side.target, true)
			if err != nil {
				return
			}
			defer c.Close()
			for id := uint32(1); id < 100 && ctx.Err() == nil && !c.closed(); id += 2 {
				err := c.write(func(fr *http2.Framer) error {
					block := append([]byte(nil), c.block(path)...)
					c.buf.Reset()
					for n := 0; c.buf.Len() < 1<<20; n++ {
						c.enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", n), Value: strings.Repeat("l", 1000), Sensitive: true})
					}
					block = append(block, c.buf.Bytes()...)
					const frag = 16 << 10
					if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:frag], EndStream: true}); err != nil {
						return err
					}
					for off := frag; off < len(block); off += frag {
						end := min(off+frag, len(block))
						if err := fr.WriteContinuation(id, end == len(block), block[off:end]); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					return
				}
				lists.Add(1)
			}
		})
		seen := w.app.counter(path).Load()
		t.Logf("%d header lists of 1 MiB sent; the application saw %d", lists.Load(), seen)
		if seen != 0 {
			t.Errorf("the application saw %d requests with 1 MiB header lists, want none (the limit is 64 KiB)", seen)
		}
	})
}
