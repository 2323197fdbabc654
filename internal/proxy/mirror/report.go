package mirror

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mirrorpb "github.com/skeinmesh/skein/proto/mirror"
)

// ReportInterval is how often a proxy hands its new examples to the
// controller.
const ReportInterval = 5 * time.Second

// Report hands the controller the examples kept since the last report,
// every interval, until ctx ends. A report that fails is tried again with
// the next one (the queue stays bounded: the oldest go first).
func (e *Examples) Report(ctx context.Context, client mirrorpb.MirrorDiffsClient, interval time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		exs := e.Unsent()
		if len(exs) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, interval)
		_, err := client.Report(rctx, &mirrorpb.ReportRequest{Examples: toProto(exs)})
		cancel()
		if err != nil {
			log.Debug("reporting mirror examples failed", "examples", len(exs), "err", err)
			e.Requeue(exs)
		}
	}
}

func toProto(exs []Example) []*mirrorpb.Example {
	out := make([]*mirrorpb.Example, len(exs))
	for i, ex := range exs {
		pb := &mirrorpb.Example{
			Time: timestamppb.New(ex.Time), Route: ex.Route, Backend: ex.Backend, Method: ex.Method, Path: ex.Path,
			PrimaryStatus: int32(ex.PrimaryStatus), MirrorStatus: int32(ex.MirrorStatus), BodyDiffers: ex.BodyDiffers,
			PrimaryBody: ex.PrimaryBody, MirrorBody: ex.MirrorBody,
		}
		for _, h := range ex.Headers {
			pb.Headers = append(pb.Headers, &mirrorpb.HeaderDiff{Name: h.Name, Primary: h.Primary, Mirror: h.Mirror})
		}
		out[i] = pb
	}
	return out
}
