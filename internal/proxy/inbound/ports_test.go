package inbound

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestListeningPortsFromProcNetTCP(t *testing.T) {
	dir := t.TempDir()
	tcp := filepath.Join(dir, "tcp")
	// Listening on 127.0.0.1:8080 and 0.0.0.0:4143; one established
	// connection from 127.0.0.1:9999 (its local port is not a listener).
	os.WriteFile(tcp, []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:102F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:270F 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
`), 0o644)
	tcp6 := filepath.Join(dir, "tcp6")
	// Listening on [::]:9090.
	os.WriteFile(tcp6, []byte(`  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
`), 0o644)
	l := &ListeningPorts{files: []string{tcp, tcp6, filepath.Join(dir, "missing")}, refresh: time.Hour}
	for port, want := range map[uint16]bool{8080: true, 4143: true, 9090: true, 9999: false, 1: false} {
		if got := l.Has(port); got != want {
			t.Errorf("Has(%d) = %v, want %v", port, got, want)
		}
	}
}

// A port that starts listening is seen on the first lookup after the
// refresh interval; before it, lookups of unknown ports read nothing.
func TestListeningPortsRereadAtMostOncePerInterval(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	l := NewListeningPorts()
	if !l.Has(port) {
		t.Fatalf("port %d listens, Has says no", port)
	}
	l.refresh = time.Hour
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	port2 := uint16(ln2.Addr().(*net.TCPAddr).Port)
	if l.Has(port2) {
		t.Errorf("port %d known before the refresh interval passed", port2)
	}
	l.refresh = 0
	if !l.Has(port2) {
		t.Errorf("port %d listens, Has says no after the refresh interval", port2)
	}
}
