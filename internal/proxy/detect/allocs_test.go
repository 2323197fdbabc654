package detect

import "testing"

// Detection runs once per connection; its allocations are a budget (see
// BenchmarkDetectHTTP1).
func TestDetectingHTTP1StaysWithinItsAllocationBudget(t *testing.T) {
	input := []byte("GET /api/v1/users/42 HTTP/1.1\r\nHost: users.default.svc\r\n\r\n")
	conn := newBytesConn(input)
	allocs := testing.AllocsPerRun(200, func() {
		conn.r.Reset(input)
		res, _, err := Detect(conn, 0)
		if err != nil || res.Protocol != HTTP1 {
			t.Fatalf("Detect = %v, %v", res.Protocol, err)
		}
	})
	if allocs > 3 {
		t.Errorf("detecting HTTP/1 allocates %v times, want at most 3", allocs)
	}
}
