package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"sigs.k8s.io/yaml"
)

// File is a Resolver that reads the mesh's services from a YAML file and
// follows the file as it changes. It is what a proxy uses without a control
// plane (a laptop, a VM, tests). The format:
//
//	services:
//	- name: emoji.demo.svc.cluster.local:8080  # authority clients call (Host / :authority), with port
//	  addresses: ["198.19.0.10:8080"]            # optional: virtual ip:port(s) clients may dial instead
//	  opaquePorts: [3306]                         # optional: ports where protocol detection is skipped
//	  endpoints:                                  # may be empty: the service exists but has no endpoints
//	  - address: 198.18.0.5:8080                  # ip:port of one workload
//	    weight: 1                                 # optional, 0 or absent reads as 1
//	    identity: ""                              # optional: TLS identity the endpoint must prove
//	    protocol: h2                              # optional hint: http1 | h2 | opaque
//	    labels: {namespace: demo, service: emoji, workload: emoji, pod: emoji-0}
//
// Unknown fields are errors, so a typo does not silently drop a setting.
// Names are matched case-insensitively and without a trailing dot on the
// host; addresses in canonical form. Every name and address must be unique
// across the file. A file with no services says so explicitly
// (`services: []`): an empty file is read as a half-written one and refused.
//
// The file's directory is watched, not the file itself, so a rename over
// the file (how editors and atomic writers save) and a Kubernetes ConfigMap
// volume's symlink swap are both seen. A change that does not parse or
// validate is logged and ignored: the last good state stays.
type File struct {
	path string
	log  *slog.Logger

	mu       sync.Mutex
	state    *fileState // nil until the first good load
	watchers map[*fileWatcher]struct{}
	loaded   chan struct{} // closed by the first good load

	lastRead []byte // contents of the last read attempted; only Run uses it

	// afterReload, when set (by tests), is called from Run after each reload
	// of a changed file, with its outcome.
	afterReload func(error)
}

// reloadDelay is how long the directory must be quiet before the file is
// read again: one save is often several events (truncate, write, rename).
const reloadDelay = 75 * time.Millisecond

// NewFile returns a File for path. Nothing is read until Run. A nil log
// means slog.Default().
func NewFile(path string, log *slog.Logger) *File {
	if log == nil {
		log = slog.Default()
	}
	return &File{
		path: path, log: log.With("path", path),
		watchers: make(map[*fileWatcher]struct{}),
		loaded:   make(chan struct{}),
	}
}

// Run loads the file, then reloads it whenever its directory changes, until
// ctx is done (it then returns nil). A file that cannot be read or is not
// valid at the start is an error that names the path and the field; later it
// is only logged. Call Run once.
func (f *File) Run(ctx context.Context) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("discovery file %s: starting watcher: %w", f.path, err)
	}
	defer watcher.Close()
	// Watch before the first read, so a change made in between is not lost.
	dir := filepath.Dir(f.path)
	if err := watcher.Add(dir); err != nil {
		return fmt.Errorf("discovery file %s: watching directory %s: %w", f.path, dir, err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("discovery file: %w", err)
	}
	f.lastRead = data
	if err := f.apply(data); err != nil {
		return fmt.Errorf("discovery file %s: %w", f.path, err)
	}

	quiet := time.NewTimer(reloadDelay)
	quiet.Stop()
	defer quiet.Stop()
	var reloadDue <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-watcher.Events:
			if !ok {
				return fmt.Errorf("discovery file %s: watcher stopped", f.path)
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			quiet.Reset(reloadDelay)
			reloadDue = quiet.C
		case err, ok := <-watcher.Errors:
			if !ok {
				return fmt.Errorf("discovery file %s: watcher stopped", f.path)
			}
			f.log.Warn("watching discovery file", "err", err)
		case <-reloadDue:
			reloadDue = nil
			f.reloadIfChanged()
		}
	}
}

// Loaded is closed once Run has loaded the file the first time; from then
// on Watch answers at once.
func (f *File) Loaded() <-chan struct{} { return f.loaded }

func (f *File) reloadIfChanged() {
	data, err := os.ReadFile(f.path)
	if err == nil {
		if bytes.Equal(data, f.lastRead) {
			return
		}
		f.lastRead = data
		err = f.apply(data)
	}
	if err != nil {
		f.log.Warn("discovery file not loaded; keeping the last good state", "err", err)
	}
	if f.afterReload != nil {
		f.afterReload(err)
	}
}

// apply parses data and, if it is valid, makes it the current state and
// tells every watcher whose set changed.
func (f *File) apply(data []byte) error {
	state, err := parseFile(data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == nil {
		close(f.loaded)
	}
	f.state = state
	notified := 0
	for w := range f.watchers {
		if w.offerIfChanged(state.lookup(w.key)) {
			notified++
		}
	}
	f.log.Info("discovery file loaded", "services", state.services, "watchers_notified", notified)
	return nil
}

// Watch implements Resolver. dst is matched against service names and
// addresses; a dst the file does not list gets EndpointSet{Exists: false}
// (and a real set if a later version of the file adds it). The sets passed
// to update are shared: read them, do not modify them.
func (f *File) Watch(ctx context.Context, dst string, update func(EndpointSet)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &fileWatcher{
		key:    normalizeDst(dst),
		latest: make(chan EndpointSet, 1),
		done:   make(chan struct{}),
	}
	f.mu.Lock()
	f.watchers[w] = struct{}{}
	if f.state != nil {
		w.offerIfChanged(f.state.lookup(w.key))
	}
	f.mu.Unlock()
	go f.deliver(ctx, w, update)
	return nil
}

// deliver is a watcher's goroutine: it hands the latest set to update, one
// call at a time, until ctx is done.
func (f *File) deliver(ctx context.Context, w *fileWatcher, update func(EndpointSet)) {
	defer close(w.done)
	defer f.removeWatcher(w)
	for {
		select {
		case <-ctx.Done():
			return
		case set := <-w.latest:
			if ctx.Err() != nil {
				return
			}
			update(set)
		}
	}
}

func (f *File) removeWatcher(w *fileWatcher) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.watchers, w)
}

// fileWatcher is one Watch call. Its fields other than latest and done are
// guarded by File.mu.
type fileWatcher struct {
	key     string
	sent    EndpointSet
	hasSent bool
	// latest holds the newest set not yet delivered; a newer one replaces
	// it, so a slow update callback skips states rather than blocking reloads.
	latest chan EndpointSet
	done   chan struct{} // closed when the watcher's goroutine has exited
}

// offerIfChanged queues set for delivery unless it equals the last one
// queued. Callers hold File.mu, which makes them the channel's only sender.
func (w *fileWatcher) offerIfChanged(set EndpointSet) bool {
	if w.hasSent && equalSets(w.sent, set) {
		return false
	}
	w.sent, w.hasSent = set, true
	select {
	case <-w.latest: // drop the undelivered older state
	default:
	}
	w.latest <- set
	return true
}

// fileState is one valid version of the file: each service's set under its
// name and under each of its addresses.
type fileState struct {
	sets     map[string]EndpointSet
	services int
}

func (s *fileState) lookup(key string) EndpointSet {
	return s.sets[key] // the zero value says Exists: false
}

// The file's YAML shape. JSON tags because sigs.k8s.io/yaml goes through
// encoding/json.
type fileDoc struct {
	Services *[]fileService `json:"services"`
}

type fileService struct {
	Name        string         `json:"name"`
	Addresses   []string       `json:"addresses,omitempty"`
	OpaquePorts []uint16       `json:"opaquePorts,omitempty"`
	Endpoints   []fileEndpoint `json:"endpoints"`
}

type fileEndpoint struct {
	Address  string            `json:"address"`
	Weight   uint32            `json:"weight,omitempty"`
	Identity string            `json:"identity,omitempty"`
	Protocol Protocol          `json:"protocol,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// parseFile parses and validates the file's contents. Errors name the field,
// e.g. "services[2].endpoints[0].address: ...".
func parseFile(data []byte) (*fileState, error) {
	var doc fileDoc
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	if doc.Services == nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, errors.New("file is empty (write `services: []` for no services)")
		}
		return nil, errors.New("services: missing (write `services: []` for no services)")
	}
	state := &fileState{sets: make(map[string]EndpointSet), services: len(*doc.Services)}
	claimedBy := make(map[string]string) // name or address -> field that listed it first
	claim := func(key, field string) error {
		if prev, ok := claimedBy[key]; ok {
			return fmt.Errorf("%s: %q is already used by %s", field, key, prev)
		}
		claimedBy[key] = field
		return nil
	}
	for i, svc := range *doc.Services {
		field := fmt.Sprintf("services[%d]", i)
		set, err := svc.endpointSet(field)
		if err != nil {
			return nil, err
		}
		name, err := normalizeName(svc.Name)
		if err != nil {
			return nil, fmt.Errorf("%s.name: %w", field, err)
		}
		if err := claim(name, field+".name"); err != nil {
			return nil, err
		}
		state.sets[name] = set
		for j, a := range svc.Addresses {
			afield := fmt.Sprintf("%s.addresses[%d]", field, j)
			ap, err := parseAddrPort(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", afield, err)
			}
			if err := claim(ap.String(), afield); err != nil {
				return nil, err
			}
			state.sets[ap.String()] = set
		}
	}
	return state, nil
}

func (svc fileService) endpointSet(field string) (EndpointSet, error) {
	set := EndpointSet{Exists: true, Endpoints: make([]Endpoint, 0, len(svc.Endpoints))}
	for j, p := range svc.OpaquePorts {
		if p == 0 {
			return EndpointSet{}, fmt.Errorf("%s.opaquePorts[%d]: port 0 is not a port", field, j)
		}
	}
	set.OpaquePorts = slices.Clone(svc.OpaquePorts)
	seen := make(map[netip.AddrPort]int)
	for j, ep := range svc.Endpoints {
		efield := fmt.Sprintf("%s.endpoints[%d]", field, j)
		ap, err := parseAddrPort(ep.Address)
		if err != nil {
			return EndpointSet{}, fmt.Errorf("%s.address: %w", efield, err)
		}
		if prev, ok := seen[ap]; ok {
			return EndpointSet{}, fmt.Errorf("%s.address: %s is already listed as endpoints[%d]", efield, ap, prev)
		}
		seen[ap] = j
		switch ep.Protocol {
		case ProtocolUnknown, ProtocolHTTP1, ProtocolHTTP2, ProtocolOpaque:
		default:
			return EndpointSet{}, fmt.Errorf("%s.protocol: %q is not one of http1, h2, opaque", efield, ep.Protocol)
		}
		weight := ep.Weight
		if weight == 0 {
			weight = 1
		}
		set.Endpoints = append(set.Endpoints, Endpoint{
			Addr:     ap,
			Weight:   weight,
			Labels:   ep.Labels,
			Identity: ep.Identity,
			Protocol: ep.Protocol,
		})
	}
	return set, nil
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an ip:port", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port 0 is not a port", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// normalizeName checks that name is host:port and returns the form lookups
// use: lower case, no trailing dot on the host.
func normalizeName(name string) (string, error) {
	host, port, err := net.SplitHostPort(name)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", name)
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return "", fmt.Errorf("%q has no host", name)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("%q: port %q is not a port number", name, port)
	}
	if ap, err := netip.ParseAddrPort(name); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
	}
	return net.JoinHostPort(host, port), nil
}

// CanonicalName is name in the form lookups match it (lower case, no
// trailing dot on the host), or name itself when that is already the form
// or it is not host:port at all. It allocates only when it changes name.
func CanonicalName(name string) string {
	if !needsNormalizing(name) {
		return name
	}
	return normalizeDst(name)
}

func needsNormalizing(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' || c == '.' && i+1 < len(name) && name[i+1] == ':' || c == '[' {
			return true
		}
	}
	return false
}

// normalizeDst turns a Watch dst into a key of fileState.sets. A dst that is
// not even host:port cannot match anything and is kept as it is.
func normalizeDst(dst string) string {
	if key, err := normalizeName(dst); err == nil {
		return key
	}
	return dst
}

func equalSets(a, b EndpointSet) bool {
	return a.Exists == b.Exists &&
		slices.Equal(a.OpaquePorts, b.OpaquePorts) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y Endpoint) bool {
			return x.Addr == y.Addr && x.Weight == y.Weight && x.Identity == y.Identity &&
				x.Protocol == y.Protocol && maps.Equal(x.Labels, y.Labels)
		})
}
