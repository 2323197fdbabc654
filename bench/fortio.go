package bench

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
)

// Protocol is one kind of traffic fortio sends, to one port of the fortio
// server.
type Protocol struct {
	Name string // as in reports and -protocols: http1, grpc
	Port uint16 // the fortio server's port for it
	// serverFlag is fortio server's flag that sets Port.
	serverFlag string
	// ok is the fortio return code of a successful call.
	ok string
	// target returns fortio load's arguments that pick the protocol and
	// name the server at addr.
	target func(addr netip.AddrPort) []string
}

// Protocols is every kind of traffic a benchmark can send.
var Protocols = []Protocol{
	{
		Name: "http1", Port: 8080, serverFlag: "-http-port", ok: "200",
		target: func(addr netip.AddrPort) []string { return []string{"http://" + addr.String() + "/echo"} },
	},
	{
		Name: "grpc", Port: 8079, serverFlag: "-grpc-port", ok: "SERVING",
		target: func(addr netip.AddrPort) []string { return []string{"-grpc", "-ping", addr.String()} },
	},
}

// histogramResolution is fortio's smallest histogram bucket, in seconds.
// Its default (1 ms) is as large as the differences being measured; at
// 10 µs the buckets are 10-100 µs wide below 1 ms, 200-500 µs up to 5 ms,
// and the maximum is exact whatever the buckets.
const histogramResolution = "0.00001"

// loadArgs returns fortio load's arguments for one run with JSON results
// on stdout: at a fixed rate over one connection, or, for rate 0, as fast
// as conns connections go (fortio's -qps 0).
func loadArgs(p Protocol, addr netip.AddrPort, rate, conns int, seconds float64) []string {
	if rate > 0 {
		conns = 1
	}
	args := []string{"load", "-quiet", "-json", "-",
		"-qps", strconv.Itoa(rate), "-c", strconv.Itoa(conns),
		"-t", strconv.FormatFloat(seconds, 'f', -1, 64) + "s",
		"-r", histogramResolution, "-p", "50,90,99",
	}
	return append(args, p.target(addr)...)
}

// Latency is a latency distribution's summary, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// loadResult is what one fortio run measured.
type loadResult struct {
	Requests int
	Errors   int
	RPS      float64
	Latency  Latency
}

// fortioOutput is the part of fortio's JSON result the harness reads.
type fortioOutput struct {
	ActualQPS         float64
	DurationHistogram struct {
		Count       int
		Max         float64 // seconds
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
	RetCodes map[string]int
}

// parseFortio reads fortio's JSON result; ok is the return code that counts
// as success, every other code is an error.
func parseFortio(data []byte, ok string) (loadResult, error) {
	var out fortioOutput
	if err := json.Unmarshal(data, &out); err != nil {
		return loadResult{}, fmt.Errorf("parsing fortio's JSON result: %w", err)
	}
	h := out.DurationHistogram
	r := loadResult{Requests: h.Count, RPS: out.ActualQPS, Latency: Latency{Max: h.Max * 1e3}}
	r.Errors = h.Count - out.RetCodes[ok]
	for _, want := range []struct {
		percentile float64
		into       *float64
	}{{50, &r.Latency.P50}, {90, &r.Latency.P90}, {99, &r.Latency.P99}} {
		found := false
		for _, p := range h.Percentiles {
			if p.Percentile == want.percentile {
				*want.into, found = p.Value*1e3, true
			}
		}
		if !found && h.Count > 0 {
			return loadResult{}, fmt.Errorf("fortio's JSON result has no p%g", want.percentile)
		}
	}
	return r, nil
}
