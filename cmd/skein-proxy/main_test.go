package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestConnectionLimitsAndDrainComeFromFlagsAndEnvironment(t *testing.T) {
	t.Setenv("SKEIN_PROXY_MAX_CONNECTIONS_PER_SOURCE", "7")
	t.Setenv("SKEIN_PROXY_DRAIN_DELAY", "2s")
	t.Setenv("SKEIN_PROXY_OPAQUE_IDLE_TIMEOUT", "10m")
	cfg, _, err := parseConfig([]string{"-max-connections", "50", "-tunnel-idle-timeout", "90s", "-shutdown-grace", "15s", "-drain-delay", "3s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnections != 50 || cfg.MaxConnectionsPerSource != 7 {
		t.Errorf("caps %d/%d, want 50 from the flag and 7 from the environment", cfg.MaxConnections, cfg.MaxConnectionsPerSource)
	}
	if cfg.OpaqueIdleTimeout != 10*time.Minute || cfg.TunnelIdleTimeout != 90*time.Second {
		t.Errorf("idle timeouts %v/%v, want 10m (environment) and 90s (flag)", cfg.OpaqueIdleTimeout, cfg.TunnelIdleTimeout)
	}
	if cfg.DrainDelay != 3*time.Second || cfg.ShutdownGrace != 15*time.Second {
		t.Errorf("drain delay %v and grace %v, want 3s (the flag wins over the environment) and 15s", cfg.DrainDelay, cfg.ShutdownGrace)
	}
}

func TestDefaultDrainFitsKubernetesDefaultGracePeriod(t *testing.T) {
	cfg, _, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if total := cfg.DrainDelay + cfg.ShutdownGrace; total >= 30*time.Second {
		t.Errorf("drain delay %v + grace %v = %v, want under terminationGracePeriodSeconds' default 30s", cfg.DrainDelay, cfg.ShutdownGrace, total)
	}
}

func TestBadLimitFromTheEnvironmentNamesTheField(t *testing.T) {
	t.Setenv("SKEIN_PROXY_MAX_CONNECTIONS_PER_SOURCE", "20000")
	_, _, err := parseConfig(nil)
	if err == nil || !strings.Contains(err.Error(), "max-connections-per-source: 20000 is more than max-connections 10000") {
		t.Errorf("got %v, want an error naming max-connections-per-source", err)
	}
}

func TestProcessDefaultsToOneCoreAndGCPercent50(t *testing.T) {
	_, ps, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if ps.cores != 1 || ps.gcPercent != 50 {
		t.Errorf("cores %d, gc percent %d; want 1 and 50", ps.cores, ps.gcPercent)
	}
	t.Setenv("SKEIN_PROXY_CORES", "0")
	if _, ps, err = parseConfig([]string{"-gc-percent", "80"}); err != nil || ps.cores != 0 || ps.gcPercent != 80 {
		t.Errorf("cores %d, gc percent %d, err %v; want 0 (environment) and 80 (flag)", ps.cores, ps.gcPercent, err)
	}
	if _, _, err = parseConfig([]string{"-cores", "-1"}); err == nil || !strings.Contains(err.Error(), "-cores") {
		t.Errorf("-cores -1: err %v, want one naming -cores", err)
	}
}

func TestGoEnvironmentWinsOverCores(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOMAXPROCS", strconv.Itoa(before))
	t.Setenv("GOGC", "100")
	processSettings{cores: before + 1, gcPercent: 50}.tuneRuntime()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d after tuning with GOMAXPROCS set, want %d", got, before)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d after tuning with GOGC set, want 100", got)
	}
	os.Unsetenv("GOMAXPROCS")
	os.Unsetenv("GOGC")
	processSettings{cores: before + 1, gcPercent: 50}.tuneRuntime()
	if got := runtime.GOMAXPROCS(0); got != before+1 {
		t.Errorf("GOMAXPROCS %d, want -cores' %d", got, before+1)
	}
	if got := debug.SetGCPercent(100); got != 50 {
		t.Errorf("GC percent %d, want -gc-percent's 50", got)
	}
}

// TestInboundPortsComeFromTheEnvironmentAndAreBounded: the injector's
// SKEIN_PROXY_INBOUND_PORTS is read, and more than 64 ports is an error
// that names the flag.
func TestInboundPortsComeFromTheEnvironmentAndAreBounded(t *testing.T) {
	t.Setenv("SKEIN_PROXY_INBOUND_PORTS", "8080, 9090")
	cfg, _, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.InboundPorts) != 2 || cfg.InboundPorts[0] != 8080 || cfg.InboundPorts[1] != 9090 {
		t.Errorf("inbound ports %v, want [8080 9090]", cfg.InboundPorts)
	}
	var many []string
	for p := range 65 {
		many = append(many, strconv.Itoa(1000+p))
	}
	_, _, err = parseConfig([]string{"-inbound-ports", strings.Join(many, ",")})
	if err == nil || !strings.Contains(err.Error(), "inbound-ports: 65 ports, at most 64") {
		t.Errorf("65 inbound ports: %v, want an error naming inbound-ports", err)
	}
}
