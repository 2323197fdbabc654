package retry

import (
	"context"
	"io"
	"sync"

	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// attemptBody counts an attempt in route_actual_response_total once its
// body ends, with the grpc-status of its trailers (none when it was cut
// short), as the metrics layer counts responses.
type attemptBody struct {
	stack.Body
	rec    *metrics.RouteRecorder
	retry  bool
	status int
	once   sync.Once
}

func (b *attemptBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	switch {
	case err == io.EOF:
		b.record(b.Body.Trailers().Get("grpc-status"))
	case err != nil:
		b.record("")
	}
	return n, err
}

// Unwrap implements stack.Unwrapper: the body is only watched for its end.
func (b *attemptBody) Unwrap() stack.Body { return b.Body }

func (b *attemptBody) Close() error {
	b.record("")
	return b.Body.Close()
}

func (b *attemptBody) record(grpc string) {
	b.once.Do(func() { b.rec.Attempt(b.retry, b.status, grpc) })
}

// cancelOnEnd ends an attempt's context once the answer's body is done
// with.
type cancelOnEnd struct {
	stack.Body
	cancel context.CancelCauseFunc
}

// Unwrap implements stack.Unwrapper.
func (b *cancelOnEnd) Unwrap() stack.Body { return b.Body }

func (b *cancelOnEnd) Close() error {
	err := b.Body.Close()
	b.cancel(nil)
	return err
}
