package discovery

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// waitLimit bounds waits for file events; generous, since it only matters
// when the feature is broken.
const waitLimit = 10 * time.Second

type fileFixture struct {
	t       *testing.T
	path    string
	file    *File
	reloads chan error
}

// startFile writes contents to a fresh directory and runs a File on it
// until the test ends.
func startFile(t *testing.T, contents string) *fileFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(path, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
	fx := &fileFixture{t: t, path: path, file: NewFile(path, slog.New(slog.NewTextHandler(t.Output(), nil))), reloads: make(chan error, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	fx.file.afterReload = func(err error) {
		select {
		case fx.reloads <- err:
		default: // a test not waiting for reloads must not stall Run
		}
	}
	done := make(chan error, 1)
	go func() { done <- fx.file.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return fx
}

// watch returns a channel that receives every set update is called with.
func (fx *fileFixture) watch(dst string) <-chan EndpointSet {
	fx.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fx.t.Cleanup(cancel)
	updates := make(chan EndpointSet, 16)
	if err := fx.file.Watch(ctx, dst, func(s EndpointSet) { updates <- s }); err != nil {
		fx.t.Fatalf("Watch(%q): %v", dst, err)
	}
	return updates
}

// write replaces the file in place (truncate and write).
func (fx *fileFixture) write(contents string) {
	fx.t.Helper()
	if err := os.WriteFile(fx.path, []byte(contents), 0o644); err != nil {
		fx.t.Fatal(err)
	}
}

// waitReload waits for Run to finish reloading a changed file.
func (fx *fileFixture) waitReload() error {
	fx.t.Helper()
	select {
	case err := <-fx.reloads:
		return err
	case <-time.After(waitLimit):
		fx.t.Fatal("no reload after the file changed")
		return nil
	}
}

func next(t *testing.T, updates <-chan EndpointSet) EndpointSet {
	t.Helper()
	select {
	case s := <-updates:
		return s
	case <-time.After(waitLimit):
		t.Fatal("no endpoint set update")
		return EndpointSet{}
	}
}

func readTestdata(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

var emojiSet = EndpointSet{
	Exists: true,
	Endpoints: []Endpoint{
		{
			Addr: netip.MustParseAddrPort("198.18.0.5:8080"), Weight: 1,
			Identity: "spiffe://skein.local/ns/demo/sa/emoji", Protocol: ProtocolHTTP2,
			Labels: map[string]string{"namespace": "demo", "service": "emoji", "workload": "emoji", "pod": "emoji-0"},
		},
		{
			Addr: netip.MustParseAddrPort("198.18.0.6:8080"), Weight: 3,
			Identity: "spiffe://skein.local/ns/demo/sa/emoji", Protocol: ProtocolHTTP2,
			Labels: map[string]string{"namespace": "demo", "service": "emoji", "workload": "emoji", "pod": "emoji-1"},
		},
	},
}

func TestFileResolvesByNameAndAddress(t *testing.T) {
	fx := startFile(t, readTestdata(t))
	select {
	case <-fx.file.Loaded():
	case <-time.After(waitLimit):
		t.Fatal("Loaded not closed after the first load")
	}
	for _, dst := range []string{
		"emoji.demo.svc.cluster.local:8080",
		"Emoji.Demo.svc.cluster.local.:8080",
		"198.19.0.10:8080",
		"[::ffff:198.19.0.10]:8080",
	} {
		if got := next(t, fx.watch(dst)); !reflect.DeepEqual(got, emojiSet) {
			t.Errorf("Watch(%q) = %+v, want %+v", dst, got, emojiSet)
		}
	}
	db := next(t, fx.watch("198.19.0.20:3306"))
	if !db.Exists || !reflect.DeepEqual(db.OpaquePorts, []uint16{3306}) || len(db.Endpoints) != 1 || db.Endpoints[0].Protocol != ProtocolOpaque {
		t.Errorf("db set = %+v", db)
	}
	for _, dst := range []string{"emoji.demo.svc.cluster.local:9090", "198.19.0.10:9090", "web:80", "nonsense"} {
		if got := next(t, fx.watch(dst)); got.Exists || len(got.Endpoints) != 0 {
			t.Errorf("Watch(%q) = %+v, want Exists: false", dst, got)
		}
	}
}

const oneEmojiEndpoint = `
services:
- name: emoji.demo.svc.cluster.local:8080
  addresses: ["198.19.0.10:8080"]
  endpoints:
  - address: 198.18.0.7:8080
- name: db.demo.svc.cluster.local:3306
  endpoints: []
`

func TestFileRewriteReachesOnlyChangedWatchers(t *testing.T) {
	fx := startFile(t, readTestdata(t))
	emoji := fx.watch("emoji.demo.svc.cluster.local:8080")
	web := fx.watch("web.demo.svc.cluster.local:80")
	next(t, emoji)
	if got := next(t, web); got.Exists {
		t.Fatalf("web exists before it was added: %+v", got)
	}

	fx.write(oneEmojiEndpoint)
	if err := fx.waitReload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	got := next(t, emoji)
	if len(got.Endpoints) != 1 || got.Endpoints[0].Addr != netip.MustParseAddrPort("198.18.0.7:8080") {
		t.Errorf("emoji after rewrite = %+v, want the one new endpoint", got)
	}

	// web did not change, so it must not hear about the first rewrite: its
	// next update is the one that adds it.
	fx.write(oneEmojiEndpoint + `
- name: web.demo.svc.cluster.local:80
  endpoints: [{address: "198.18.0.8:80"}]
`)
	if err := fx.waitReload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := next(t, web); !got.Exists || len(got.Endpoints) != 1 {
		t.Errorf("web's next update = %+v, want the added service", got)
	}
	select {
	case s := <-emoji:
		t.Errorf("emoji notified although its set did not change: %+v", s)
	default:
	}
}

func TestFileRenameOverReachesWatchers(t *testing.T) {
	fx := startFile(t, readTestdata(t))
	emoji := fx.watch("198.19.0.10:8080")
	next(t, emoji)

	tmp := filepath.Join(filepath.Dir(fx.path), ".services.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(oneEmojiEndpoint), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, fx.path); err != nil {
		t.Fatal(err)
	}
	if got := next(t, emoji); len(got.Endpoints) != 1 {
		t.Errorf("after rename-over = %+v, want one endpoint", got)
	}
}

// A Kubernetes ConfigMap volume: the file is a symlink through "..data",
// itself a symlink to a timestamped directory that is swapped atomically.
func TestFileFollowsConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	writeVersion := func(name, contents string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "services.yaml"), []byte(contents), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..v1", readTestdata(t))
	mustSymlink(t, "..v1", filepath.Join(dir, "..data"))
	mustSymlink(t, "..data/services.yaml", filepath.Join(dir, "services.yaml"))

	f := NewFile(filepath.Join(dir, "services.yaml"), slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	updates := make(chan EndpointSet, 4)
	if err := f.Watch(ctx, "emoji.demo.svc.cluster.local:8080", func(s EndpointSet) { updates <- s }); err != nil {
		t.Fatal(err)
	}
	if got := next(t, updates); len(got.Endpoints) != 2 {
		t.Fatalf("initial = %+v", got)
	}

	writeVersion("..v2", oneEmojiEndpoint)
	mustSymlink(t, "..v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if got := next(t, updates); len(got.Endpoints) != 1 {
		t.Errorf("after the symlink swap = %+v, want one endpoint", got)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestFileInvalidRewriteKeepsLastGoodState(t *testing.T) {
	fx := startFile(t, readTestdata(t))
	emoji := fx.watch("emoji.demo.svc.cluster.local:8080")
	next(t, emoji)

	for _, bad := range []string{
		"services:\n- name: emoji.demo.svc.cluster.local:8080\n  endpoints: [{address: nowhere}]\n",
		"services: [{name: x:1, endpoints: [], colour: blue}]\n",
		"",
	} {
		fx.write(bad)
		if err := fx.waitReload(); err == nil {
			t.Fatalf("reload of %q succeeded", bad)
		}
		if got := next(t, fx.watch("emoji.demo.svc.cluster.local:8080")); !reflect.DeepEqual(got, emojiSet) {
			t.Errorf("after invalid rewrite %q, a new watch sees %+v, want the last good set", bad, got)
		}
	}
	select {
	case s := <-emoji:
		t.Errorf("watcher notified of an invalid file: %+v", s)
	default:
	}

	fx.write(oneEmojiEndpoint)
	if got := next(t, emoji); len(got.Endpoints) != 1 {
		t.Errorf("after a valid rewrite = %+v, want one endpoint", got)
	}
}

func TestWatchStopsWhenContextIsDone(t *testing.T) {
	fx := startFile(t, readTestdata(t))
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan EndpointSet, 1)
	if err := fx.file.Watch(ctx, "emoji.demo.svc.cluster.local:8080", func(s EndpointSet) { updates <- s }); err != nil {
		t.Fatal(err)
	}
	next(t, updates)

	fx.file.mu.Lock()
	var w *fileWatcher
	for w = range fx.file.watchers {
	}
	fx.file.mu.Unlock()
	if w == nil {
		t.Fatal("watch not registered")
	}
	cancel()
	select {
	case <-w.done:
	case <-time.After(waitLimit):
		t.Fatal("watcher goroutine still running after its context was cancelled")
	}
	fx.file.mu.Lock()
	n := len(fx.file.watchers)
	fx.file.mu.Unlock()
	if n != 0 {
		t.Errorf("%d watchers registered after cancel, want 0", n)
	}

	if err := fx.file.Watch(ctx, "x:1", func(EndpointSet) {}); err == nil {
		t.Error("Watch with a done context returned nil")
	}
}

func TestFileRunFailsOnBadInitialFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	if err := os.WriteFile(path, []byte("services:\n- name: a:80\n  endpoints: [{address: 1.2.3.4}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := NewFile(path, nil)
	err := f.Run(context.Background())
	select {
	case <-f.Loaded():
		t.Error("Loaded closed although the file did not load")
	default:
	}
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "services[0].endpoints[0].address") {
		t.Errorf("Run = %v, want an error naming %s and the field", err, path)
	}

	err = NewFile(filepath.Join(t.TempDir(), "missing.yaml"), nil).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Run on a missing file = %v, want an error naming it", err)
	}
}

func TestParseFileErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty file", "  \n", "file is empty"},
		{"no services key", "other: 1\n", `unknown field "other"`},
		{"unknown field", "services: [{name: a:80, endpoints: [{address: 1.2.3.4:80, wieght: 2}]}]", `unknown field "wieght"`},
		{"name without port", "services: [{name: a, endpoints: []}]", "services[0].name"},
		{"name with bad port", "services: [{name: a:http, endpoints: []}]", "services[0].name"},
		{"name port zero", "services: [{name: a:0, endpoints: []}]", "services[0].name"},
		{"bad address", "services: [{name: a:80, addresses: [a:80], endpoints: []}]", "services[0].addresses[0]"},
		{"bad endpoint", "services: [{name: a:80, endpoints: []}, {name: b:80, endpoints: [{address: 1.2.3.4:80}, {address: 1.2.3.4}]}]", "services[1].endpoints[1].address"},
		{"duplicate endpoint", "services: [{name: a:80, endpoints: [{address: 1.2.3.4:80}, {address: 1.2.3.4:80}]}]", "services[0].endpoints[1].address"},
		{"bad protocol", "services: [{name: a:80, endpoints: [{address: 1.2.3.4:80, protocol: h3}]}]", "services[0].endpoints[0].protocol"},
		{"opaque port zero", "services: [{name: a:80, opaquePorts: [0], endpoints: []}]", "services[0].opaquePorts[0]"},
		{"duplicate name", "services: [{name: a:80, endpoints: []}, {name: A.:80, endpoints: []}]", "services[1].name: \"a:80\" is already used by services[0].name"},
		{"duplicate address", "services: [{name: a:80, addresses: [10.0.0.1:80], endpoints: []}, {name: b:80, addresses: [10.0.0.1:80], endpoints: []}]", "services[1].addresses[0]"},
		{"address clashes with name", "services: [{name: 10.0.0.1:80, endpoints: []}, {name: b:80, addresses: [10.0.0.1:80], endpoints: []}]", "services[1].addresses[0]"},
		{"negative weight", "services: [{name: a:80, endpoints: [{address: 1.2.3.4:80, weight: -1}]}]", "weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFile([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseFile = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseFileAcceptsNoServices(t *testing.T) {
	state, err := parseFile([]byte("services: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := state.lookup("a:80"); got.Exists {
		t.Errorf("lookup in an empty file = %+v", got)
	}
}
