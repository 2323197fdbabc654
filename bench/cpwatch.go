package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	ctlidentity "github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/proxy/identity"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// change is one edit of the manifests: an endpoint added or removed.
type change struct {
	id    int
	addr  string // "ip:port" as the destination service names endpoints
	added bool
	at    time.Time // when the manifest file was renamed into place
	// seen counts the watchers that have seen it; all is closed when
	// every watcher has.
	seen atomic.Int64
	all  chan struct{}
	once sync.Once
}

// watcher is one destination stream, over its own connection, as one
// proxy would hold it.
type watcher struct {
	conn *grpc.ClientConn
	// snapshot is closed when the first message arrived.
	snapshot      chan struct{}
	snapshotBytes int
	mu            sync.Mutex
	delays        map[int]time.Duration // change id -> propagation time
	bytes         map[int]int           // change id -> bytes received for it
	messages      map[int]int
	err           error
}

// observe records one message against the change in progress.
func (w *watcher) observe(cp *cpBench, u *destinationpb.Update, now time.Time) {
	size := proto.Size(u)
	c := cp.current.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	if c == nil {
		return
	}
	w.bytes[c.id] += size
	w.messages[c.id]++
	if _, done := w.delays[c.id]; done || !reflects(u, c) {
		return
	}
	w.delays[c.id] = now.Sub(c.at)
	if int(c.seen.Add(1)) == len(cp.watchers) {
		c.once.Do(func() { close(c.all) })
	}
}

// reflects reports whether u carries change c.
func reflects(u *destinationpb.Update, c *change) bool {
	switch {
	case u.GetSnapshot() != nil:
		has := slices.ContainsFunc(u.GetSnapshot().GetEndpoints(), func(e *destinationpb.Endpoint) bool { return e.GetAddress() == c.addr })
		return has == c.added
	case u.GetAdd() != nil && c.added:
		return slices.ContainsFunc(u.GetAdd().GetEndpoints(), func(e *destinationpb.Endpoint) bool { return e.GetAddress() == c.addr })
	case u.GetRemove() != nil && !c.added:
		return slices.Contains(u.GetRemove().GetAddresses(), c.addr)
	}
	return false
}

// openWatchers dials the controller once per watcher (TLS, checked against
// the trust anchor and the controller's identity) and starts each stream.
func (cp *cpBench) openWatchers(ctx context.Context) error {
	anchorsPEM, err := os.ReadFile(filepath.Join(cp.identity(), "ca.crt"))
	if err != nil {
		return fmt.Errorf("reading trust anchor: %w", err)
	}
	anchors, err := pki.ParseCertificates(anchorsPEM)
	if err != nil {
		return fmt.Errorf("parsing trust anchor: %w", err)
	}
	controllerID := meshid.Controller(spiffeid.RequireTrustDomainFromString(benchTrustDomain))
	watchCtx, cancel := context.WithCancel(context.Background())
	cp.stopWatch = cancel
	tlsConfig, err := cp.watcherTLS(ctx, watchCtx, anchors, controllerID)
	if err != nil {
		return err
	}
	creds := credentials.NewTLS(tlsConfig)
	for range cp.cfg.Watchers {
		conn, err := grpc.NewClient(cp.grpcAddr, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			return fmt.Errorf("dialing the controller: %w", err)
		}
		w := &watcher{conn: conn, snapshot: make(chan struct{}),
			delays: map[int]time.Duration{}, bytes: map[int]int{}, messages: map[int]int{}}
		cp.watchers = append(cp.watchers, w)
	}
	for _, w := range cp.watchers {
		cp.wg.Go(func() { w.err = cp.watch(watchCtx, w) })
	}
	return nil
}

// watcherTLS certifies one identity for every watcher, as a proxy does
// (the controller serves destination streams only to mesh certificates),
// and returns the TLS config that presents it. The identity renews itself
// until runCtx ends.
func (cp *cpBench) watcherTLS(ctx, runCtx context.Context, anchors []*x509.Certificate, controllerID spiffeid.ID) (*tls.Config, error) {
	key, err := ctlidentity.LoadJoinTokenKey(filepath.Join(cp.identity(), "join-token.key"))
	if err != nil {
		return nil, err
	}
	id := spiffeid.RequireFromString("spiffe://" + benchTrustDomain + "/ns/bench/sa/watcher")
	token, err := ctlidentity.MintJoinToken(key, id, ctlidentity.Audience, time.Hour)
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(cp.dir, "watcher-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cp.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(identity.ControllerTLS(anchors, controllerID))))
	if err != nil {
		return nil, fmt.Errorf("dialing the controller: %w", err)
	}
	local, err := identity.New(identity.Config{
		Identity: id.String(), TokenFile: tokenFile, TrustAnchors: anchors,
		Client: identitypb.NewIdentityClient(conn), Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	cp.wg.Go(func() {
		defer conn.Close()
		_ = local.Run(runCtx)
	})
	for local.Ready() != nil {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("certifying the watchers' identity: %w", local.Ready())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return local.ClientTLS(controllerID, []string{"h2"}), nil
}

// watch follows one stream until ctx ends.
func (cp *cpBench) watch(ctx context.Context, w *watcher) error {
	stream, err := destinationpb.NewDestinationClient(w.conn).Get(ctx, &destinationpb.GetDestination{Path: cpAuthority})
	if err != nil {
		close(w.snapshot)
		return err
	}
	first := true
	for {
		u, err := stream.Recv()
		now := time.Now()
		if err != nil {
			if first {
				close(w.snapshot)
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if first {
			w.snapshotBytes = proto.Size(u)
			first = false
			close(w.snapshot)
			continue
		}
		w.observe(cp, u, now)
	}
}

// measure subscribes every watcher, then makes the changes one by one.
func (cp *cpBench) measure(ctx context.Context, r *CPReport) error {
	pid := cp.controller.pid()
	before, err := readUsage(pid)
	if err != nil {
		return err
	}
	cp.log.Info("opening destination streams", "watchers", cp.cfg.Watchers, "endpoints", cp.cfg.Endpoints)
	start := time.Now()
	if err := cp.openWatchers(ctx); err != nil {
		return err
	}
	for i, w := range cp.watchers {
		select {
		case <-w.snapshot:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("watcher %d got no snapshot in 2 minutes", i)
		}
		if w.snapshotBytes == 0 {
			return fmt.Errorf("watcher %d: stream failed before its snapshot: %v", i, w.err)
		}
	}
	r.SubscribeMS = ms64(time.Since(start))
	r.SnapshotBytes = cp.watchers[0].snapshotBytes
	subscribed, err := readUsage(pid)
	if err != nil {
		return err
	}
	r.Controller.SubscribeCPUMS = ms64(subscribed.CPU - before.CPU)
	time.Sleep(time.Second) // let the subscriptions' work settle

	churnStart, err := readUsage(pid)
	if err != nil {
		return err
	}
	waitProfile := func() error { return nil }
	if cp.cfg.ProfileDir != "" {
		ctl := sidecar{role: "controller", proc: cp.controller, profileURL: "http://" + cp.adminAddr + "/debug/pprof/profile"}
		waitProfile = profileSidecars(ctx, []sidecar{ctl}, 10, cp.cfg.ProfileDir, "controlplane")
	}
	var extra []string
	var changes []*change
	for i := range cp.cfg.Changes {
		c := &change{id: i, all: make(chan struct{})}
		if i%2 == 0 {
			ip := fmt.Sprintf("10.2.%d.%d", i/250, i%250+1)
			extra = append(extra, ip)
			c.addr, c.added = ip+":8080", true
		} else {
			c.addr = extra[len(extra)-1] + ":8080"
			extra = extra[:len(extra)-1]
		}
		if err := cp.writeManifests(extra); err != nil {
			return err
		}
		// Published before the rename: a watcher may see it at once.
		c.at = time.Now()
		cp.current.Store(c)
		if _, err := cp.publish(); err != nil {
			return err
		}
		select {
		case <-c.all:
		case <-time.After(cp.cfg.ChangeTimeout):
			cp.log.Warn("not every watcher saw the change", "change", i, "seen", c.seen.Load())
		case <-ctx.Done():
			return ctx.Err()
		}
		changes = append(changes, c)
		time.Sleep(cp.cfg.Pause)
	}
	cp.current.Store(nil)
	if err := waitProfile(); err != nil {
		return err
	}
	end, err := readUsage(pid)
	if err != nil {
		return err
	}
	r.Controller.ChurnCPUMS = ms64(end.CPU - churnStart.CPU)
	r.Controller.CPUPerChangeMS = r.Controller.ChurnCPUMS / float64(cp.cfg.Changes)
	r.Controller.PeakRSSMB = float64(end.PeakRSS) / (1 << 20)
	if rss, err := readCurrentRSS(pid); err == nil {
		r.Controller.RSSMB = float64(rss) / (1 << 20)
	}
	cp.summarize(r, changes)
	for i, w := range cp.watchers {
		if w.err != nil {
			return fmt.Errorf("watcher %d: stream failed: %w", i, w.err)
		}
	}
	return nil
}

// summarize turns the watchers' records into the report's figures.
func (cp *cpBench) summarize(r *CPReport, changes []*change) {
	var all, perChangeMax []float64
	var bytes, messages int
	for _, c := range changes {
		var slowest float64
		for _, w := range cp.watchers {
			w.mu.Lock()
			d, ok := w.delays[c.id]
			bytes += w.bytes[c.id]
			messages += w.messages[c.id]
			w.mu.Unlock()
			if !ok {
				r.Missed++
				continue
			}
			all = append(all, ms64(d))
			slowest = max(slowest, ms64(d))
		}
		perChangeMax = append(perChangeMax, slowest)
	}
	slices.Sort(all)
	r.Propagation = PropagationStats{
		Samples:         len(all),
		P50:             percentile(all, 50),
		P90:             percentile(all, 90),
		P99:             percentile(all, 99),
		PerChangeMaxP50: median(perChangeMax),
	}
	if len(all) > 0 {
		r.Propagation.Max = all[len(all)-1]
	}
	pairs := float64(len(changes) * len(cp.watchers))
	r.BytesPerUpdate = float64(bytes) / pairs
	r.MessagesPerUpdate = float64(messages) / pairs
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// errNoVmRSS is returned when /proc/PID/status has no VmRSS line.
var errNoVmRSS = errors.New("no VmRSS line")

// readCurrentRSS returns VmRSS from /proc/PID/status, in bytes.
func readCurrentRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	// VmRSS has VmHWM's format; reuse its parser on the renamed line.
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return parsePeakRSS("VmHWM:" + rest)
		}
	}
	return 0, errNoVmRSS
}
