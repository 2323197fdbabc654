package tapapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/skeinmesh/skein/internal/tap"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// eventBuffer is how many events wait for a slow client; past it the
// proxies' streams back up and the proxies drop (and count) events.
const eventBuffer = 256

// session is one client's tap: a stream per proxy of its resource, merged
// into the client's answer. Every Resync it resolves the resource again:
// proxies that joined are tapped, those that left are stopped. A proxy
// whose stream failed is not called again until it leaves and comes back
// (a restarted pod has a new address or identity, and so a new key).
type session struct {
	server  *server
	filter  *tappb.Filter
	maxRPS  int
	log     *slog.Logger
	resolve func() ([]Target, error)

	events  chan tap.Event
	wg      sync.WaitGroup
	running map[string]context.CancelFunc // by targetKey
	overCap bool                          // said once that the resource grew past MaxProxies
	synced  bool                          // the first sync is done
}

func targetKey(t Target) string { return t.Name() + "|" + t.Addr.String() + "|" + t.Identity }

// run taps targets and writes the merged events to w until the client
// leaves. It returns the events written and the drops the proxies
// reported.
func (ss *session) run(ctx context.Context, w http.ResponseWriter, targets []Target) (sent, dropped uint64) {
	ctx, cancel := context.WithCancel(ctx)
	ss.events = make(chan tap.Event, eventBuffer)
	ss.running = map[string]context.CancelFunc{}
	// Every proxy's goroutine ends once ctx does: returning cancels ctx
	// and waits for them.
	defer func() {
		cancel()
		ss.wg.Wait()
	}()
	ss.sync(ctx, targets)

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	resync := time.NewTicker(ss.server.cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case e := <-ss.events:
			if err := enc.Encode(e); err != nil {
				return sent, dropped // the client left
			}
			if flusher != nil {
				flusher.Flush()
			}
			sent++
			dropped += e.Dropped
		case <-resync.C:
			targets, err := ss.resolve()
			if err != nil {
				targets = nil // the resource has no proxy left: stop every stream, wait for one
			}
			ss.sync(ctx, targets)
		case <-ctx.Done():
			return sent, dropped
		}
	}
}

// sync starts a stream for each target not yet tapped (up to MaxProxies)
// and stops those of proxies no longer among targets.
func (ss *session) sync(ctx context.Context, targets []Target) {
	want := make(map[string]bool, len(targets))
	for _, t := range targets {
		key := targetKey(t)
		want[key] = true
		if _, ok := ss.running[key]; ok {
			continue
		}
		if len(ss.running) >= ss.server.cfg.MaxProxies {
			if !ss.overCap {
				ss.overCap = true
				ss.log.Warn("tap resource grew past the proxy bound", "max_proxies", ss.server.cfg.MaxProxies)
				ss.send(ctx, tap.Event{Kind: tap.KindError, Time: time.Now(), Proxy: t.Name(),
					Error: "the resource now selects more than " + strconv.Itoa(ss.server.cfg.MaxProxies) + " proxies: new ones are not tapped"})
			}
			continue
		}
		if ss.synced {
			ss.log.Info("tap proxy joined", "proxy", t.Name())
		}
		ss.start(ctx, key, t)
	}
	ss.synced = true
	for key, stop := range ss.running {
		if !want[key] {
			stop()
			delete(ss.running, key)
			ss.log.Info("tap proxy left", "proxy", key)
		}
	}
}

// start taps one proxy until its stream ends or it is stopped.
func (ss *session) start(ctx context.Context, key string, t Target) {
	ctx, stop := context.WithCancel(ctx)
	ss.running[key] = stop
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		if t.OptInError != "" {
			ss.send(ctx, tap.Event{Kind: tap.KindError, Time: time.Now(), Proxy: t.Name(), Error: t.OptInError})
		}
		err := ss.server.observe(ctx, t, observeRequest(ss.filter, ss.maxRPS, t.Bodies), ss.events)
		if err != nil && ctx.Err() == nil {
			ss.log.Warn("tap of a proxy failed", "proxy", t.Name(), "addr", t.Addr.String(), "identity", t.Identity, "err", err)
			ss.send(ctx, errorEvent(t.Name(), err))
		}
	}()
}

func (ss *session) send(ctx context.Context, e tap.Event) {
	select {
	case ss.events <- e:
	case <-ctx.Done():
	}
}
