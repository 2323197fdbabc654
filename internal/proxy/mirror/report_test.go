package mirror

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	mirrorpb "github.com/skeinmesh/skein/proto/mirror"
)

// refusingOnce is a MirrorDiffs client that refuses the first report (as
// the controller does before a proxy has its certificate) and keeps the
// examples of the others.
type refusingOnce struct {
	mu       sync.Mutex
	calls    int
	got      []*mirrorpb.Example
	received chan struct{}
}

func (c *refusingOnce) Report(_ context.Context, req *mirrorpb.ReportRequest, _ ...grpc.CallOption) (*mirrorpb.ReportResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls == 1 {
		return nil, errors.New("a mesh client certificate is required")
	}
	c.got = append(c.got, req.GetExamples()...)
	close(c.received)
	return &mirrorpb.ReportResponse{}, nil
}

func TestAReportTheControllerRefusedIsSentAgain(t *testing.T) {
	e := NewExamples()
	e.add(Example{Route: "demo/web", Path: "/a", Time: time.Now(), Headers: []HeaderDiff{{Name: "set-cookie", Primary: "[REDACTED]"}}})
	c := &refusingOnce{received: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		e.Report(ctx, c, 10*time.Millisecond, slog.New(slog.DiscardHandler))
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-c.received:
	case <-time.After(10 * time.Second):
		t.Fatal("the refused example was never sent again")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.got) != 1 || c.got[0].GetPath() != "/a" || c.got[0].GetRoute() != "demo/web" || c.got[0].GetHeaders()[0].GetPrimary() != "[REDACTED]" {
		t.Errorf("controller got %v, want the one example", c.got)
	}
}
