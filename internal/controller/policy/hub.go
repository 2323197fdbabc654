package policy

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes/routespb"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// Inputs is what the hub needs from the model.
type Inputs interface {
	// WatchPolicyInputs calls update with the current inputs and again
	// after every change, from one goroutine, until ctx is done.
	WatchPolicyInputs(ctx context.Context, update func(model.PolicyInputs))
}

// hub compiles the model's policy inputs on every change and hands each
// watched target its policy when, and only when, it changed.
type hub struct {
	log      *slog.Logger
	metrics  *serverMetrics
	compiler *Compiler

	ready chan struct{} // closed once the first inputs are compiled

	mu       sync.Mutex
	compiled *Compiled
	reported map[string]bool // error texts logged, so each is logged once
	topics   map[string]*topic
}

// topic is one watched target: its current policy and its listeners, each a
// slot holding the newest policy not yet sent.
type topic struct {
	current   *policypb.OutboundPolicy
	listeners map[chan *policypb.OutboundPolicy]struct{}
}

func newHub(log *slog.Logger, metrics *serverMetrics) *hub {
	return &hub{
		log: log, metrics: metrics, compiler: NewCompiler(),
		ready: make(chan struct{}), reported: map[string]bool{}, topics: map[string]*topic{},
	}
}

// update compiles new inputs and offers every watched target whose policy
// changed its new policy.
func (h *hub) update(in model.PolicyInputs) {
	compiled := h.compiler.Update(in)
	h.logErrors(compiled.Errors)
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.compiled == nil
	h.compiled = compiled
	for target, t := range h.topics {
		next := routespb.ToProto(compiled.Policy(target))
		if proto.Equal(t.current, next) {
			continue
		}
		t.current = next
		for l := range t.listeners {
			offer(l, next)
		}
	}
	if first {
		close(h.ready)
	}
}

// logErrors logs each problem once, when it appears, and says when one is
// gone.
func (h *hub) logErrors(errs []*Error) {
	now := map[string]bool{}
	for _, e := range errs {
		text := e.Error()
		now[text] = true
		if !h.reported[text] {
			h.log.Warn("invalid policy object: its last good version, if any, keeps serving", "kind", e.Kind,
				"namespace", e.Namespace, "name", e.Name, "field", e.Field, "err", text)
		}
	}
	for text := range h.reported {
		if !now[text] {
			h.log.Info("policy problem resolved", "was", text)
		}
	}
	h.reported = now
	h.metrics.invalidObjects.Set(float64(countObjects(errs)))
}

func countObjects(errs []*Error) int {
	objects := map[string]bool{}
	for _, e := range errs {
		objects[e.Kind+" "+e.Namespace+"/"+e.Name] = true
	}
	return len(objects)
}

// watch registers a listener of target after the first inputs are
// compiled. The listener's slot holds the current policy at once; cancel
// unregisters it.
func (h *hub) watch(ctx context.Context, target string) (<-chan *policypb.OutboundPolicy, func(), error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	l := make(chan *policypb.OutboundPolicy, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[target]
	if t == nil {
		t = &topic{current: routespb.ToProto(h.compiled.Policy(target)), listeners: map[chan *policypb.OutboundPolicy]struct{}{}}
		h.topics[target] = t
	}
	t.listeners[l] = struct{}{}
	l <- t.current
	return l, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(t.listeners, l)
		if len(t.listeners) == 0 {
			delete(h.topics, target)
		}
	}, nil
}

// offer puts p in the slot l, replacing a policy not sent yet: a slow
// stream gets the newest policy, not every step. Called with h.mu held,
// the only sender.
func offer(l chan *policypb.OutboundPolicy, p *policypb.OutboundPolicy) {
	select {
	case <-l:
	default:
	}
	l <- p
}
