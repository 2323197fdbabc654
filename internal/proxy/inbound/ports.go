package inbound

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// ListeningPorts knows which TCP ports something listens on in the proxy's
// network namespace (the pod's), read from /proc/net/tcp and tcp6. Inbound
// metrics name a connection's port only when it is one of these: a client
// can dial any of the 65,535 ports the redirect catches, and a series per
// port it tries would be the client's choice.
//
// A port seen listening stays known until the next read; a port not seen
// makes the lists be read again, at most once per refresh interval, so a
// client sweeping ports costs one read a second.
type ListeningPorts struct {
	files   []string
	refresh time.Duration

	mu       sync.Mutex
	ports    map[uint16]bool
	lastRead time.Time
}

// NewListeningPorts reads the pod's listening ports on demand.
func NewListeningPorts() *ListeningPorts {
	return &ListeningPorts{files: []string{"/proc/net/tcp", "/proc/net/tcp6"}, refresh: time.Second}
}

// Has reports whether something listened on port at the last read, reading
// again if it did not and the last read is older than the refresh interval.
func (l *ListeningPorts) Has(port uint16) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ports[port] {
		return true
	}
	if now := time.Now(); now.Sub(l.lastRead) >= l.refresh {
		l.lastRead = now
		l.ports = readListening(l.files)
	}
	return l.ports[port]
}

// readListening returns the local ports of the sockets in state LISTEN in
// files (the /proc/net/tcp format); files that cannot be read (no IPv6)
// add nothing.
func readListening(files []string) map[uint16]bool {
	ports := make(map[uint16]bool)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // the header line
		for sc.Scan() {
			if port, err := listeningPort(sc.Text()); err == nil && port != 0 {
				ports[port] = true
			}
		}
	}
	return ports
}

// tcpListen is the st column's value for a listening socket.
const tcpListen = "0A"

// listeningPort reads one /proc/net/tcp line: the local port when the
// socket listens, else 0.
func listeningPort(line string) (uint16, error) {
	fields := bytes.Fields([]byte(line))
	if len(fields) < 4 {
		return 0, fmt.Errorf("short line %q", line)
	}
	if string(fields[3]) != tcpListen {
		return 0, nil
	}
	local := fields[1]
	i := bytes.LastIndexByte(local, ':')
	if i < 0 {
		return 0, fmt.Errorf("local address %q has no port", local)
	}
	port, err := strconv.ParseUint(string(local[i+1:]), 16, 16)
	if err != nil {
		return 0, fmt.Errorf("local port %q: %w", local[i+1:], err)
	}
	return uint16(port), nil
}
