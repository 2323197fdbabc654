package metrics

import (
	"testing"
	"time"
)

// Recording a response for a label set already seen must not allocate: it
// runs once per request (see BenchmarkRecordRequest).
func TestRecordingARequestDoesNotAllocate(t *testing.T) {
	r := newTestRegistry(t)
	r.Request(outboundEmoji).Response(200, "0", 3*time.Millisecond) // first use creates the series
	allocs := testing.AllocsPerRun(1000, func() {
		r.Request(outboundEmoji).Response(200, "0", 3*time.Millisecond)
	})
	if allocs > 0 {
		t.Errorf("recording a request allocates %v times, want 0", allocs)
	}
}
