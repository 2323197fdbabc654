package bench

import (
	"math"
	"os"
	"testing"
	"time"
)

func TestParseFortioReadsLatencyAndCountsErrors(t *testing.T) {
	http, err := os.ReadFile("testdata/fortio-http.json")
	if err != nil {
		t.Fatal(err)
	}
	grpc, err := os.ReadFile("testdata/fortio-grpc.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		data       []byte
		ok         string
		wantErrors int
		wantP50    float64 // ms
		wantMax    float64 // ms
	}{
		{"http all 200", http, "200", 0, 0.46044489898989903, 0.743805},
		{"grpc all SERVING", grpc, "SERVING", 0, 0.6535429999999999, 1.881997},
		{"http read as grpc: every call an error", http, "SERVING", 100, 0.46044489898989903, 0.743805},
		{"mixed codes", []byte(`{"ActualQPS": 99.5, "RetCodes": {"200": 90, "503": 7, "-1": 3},
			"DurationHistogram": {"Count": 100, "Max": 0.002, "Percentiles": [
			{"Percentile": 50, "Value": 0.001}, {"Percentile": 90, "Value": 0.0015}, {"Percentile": 99, "Value": 0.0019}]}}`),
			"200", 10, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseFortio(tt.data, tt.ok)
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != tt.wantErrors {
				t.Errorf("errors = %d, want %d", r.Errors, tt.wantErrors)
			}
			if r.Requests != 100 {
				t.Errorf("requests = %d, want 100", r.Requests)
			}
			if !near(r.Latency.P50, tt.wantP50) || !near(r.Latency.Max, tt.wantMax) {
				t.Errorf("p50, max = %v, %v ms, want %v, %v", r.Latency.P50, r.Latency.Max, tt.wantP50, tt.wantMax)
			}
			if !(r.Latency.P50 <= r.Latency.P90 && r.Latency.P90 <= r.Latency.P99 && r.Latency.P99 <= r.Latency.Max) {
				t.Errorf("percentiles out of order: %+v", r.Latency)
			}
			if r.RPS < 99 || r.RPS > 101 {
				t.Errorf("rps = %v, want about 100", r.RPS)
			}
		})
	}
}

func TestParseFortioRefusesResultsWithoutPercentiles(t *testing.T) {
	_, err := parseFortio([]byte(`{"RetCodes": {"200": 5}, "DurationHistogram": {"Count": 5, "Percentiles": [{"Percentile": 50, "Value": 0.001}]}}`), "200")
	if err == nil {
		t.Fatal("parsed a result with no p90 or p99")
	}
}

func TestParseCPUTimeCountsFieldsAfterTheCommandName(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want time.Duration
	}{
		{"plain", "42 (skein-proxy) S 1 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 9 0 100 1 1", 1750 * time.Millisecond},
		{"spaces and parens in name", "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 9 0 100 1 1", 70 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUTime(tt.stat)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := parseCPUTime("42 (short) S 1 2"); err == nil {
		t.Error("parsed a truncated stat line")
	}
}

func TestReadUsageOfThisProcess(t *testing.T) {
	u, err := readUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakRSS < 1<<20 {
		t.Errorf("peak RSS = %d bytes, a Go test binary uses more than 1 MB", u.PeakRSS)
	}
}

func TestParsePeakRSS(t *testing.T) {
	got, err := parsePeakRSS("Name:\tskein-proxy\nVmPeak:\t 1263404 kB\nVmHWM:\t   17204 kB\nVmRSS:\t   16000 kB\n")
	if err != nil {
		t.Fatal(err)
	}
	if got != 17204*1024 {
		t.Errorf("got %d, want %d", got, 17204*1024)
	}
	if _, err := parsePeakRSS("Name:\tkthreadd\n"); err == nil {
		t.Error("no error for a status without VmHWM (a kernel thread)")
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
