package tcp

import (
	"context"
	"io"
	"testing"
)

func BenchmarkForward(b *testing.B) {
	for _, bc := range []struct {
		name     string
		counters Counters
	}{
		{"counted", &testCounters{}},
		{"uncounted", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			client, server, result := forwardOnce(b, context.Background(), bc.counters)
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
