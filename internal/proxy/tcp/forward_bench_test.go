package tcp

import (
	"context"
	"io"
	"testing"
	"time"
)

func BenchmarkForward(b *testing.B) {
	for _, bc := range []struct {
		name     string
		counters Counters
		opts     []Option
	}{
		{"counted", &testCounters{}, nil},
		{"uncounted", nil, nil},
		// The proxy's opaque connections: every read re-arms a deadline.
		{"idle_timeout", nil, []Option{WithIdleTimeout(time.Hour)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			client, server, result := forwardOnce(b, context.Background(), bc.counters, bc.opts...)
			drained := make(chan struct{})
			go func() {
				io.Copy(io.Discard, server)
				close(drained)
			}()
			chunk := make([]byte, 64<<10)
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				if _, err := client.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			client.CloseWrite()
			<-drained
			server.Close()
			waitResult(b, result)
		})
	}
}
