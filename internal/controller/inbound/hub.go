package inbound

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skeinmesh/skein/internal/authz/authzpb"
	"github.com/skeinmesh/skein/internal/controller/policy"
	"github.com/skeinmesh/skein/internal/model"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// Inputs is what the hub needs from the model.
type Inputs interface {
	WatchInboundInputs(ctx context.Context, update func(model.InboundInputs))
}

// hub compiles the model's inbound inputs on every change and hands each
// watched port its policy when, and only when, it changed.
type hub struct {
	log      *slog.Logger
	compiler *Compiler
	ready    chan struct{}
	invalid  prometheus.Gauge // objects invalid now; nil: not counted

	mu       sync.Mutex
	compiled *Compiled
	reported map[string]bool
	topics   map[topicKey]*topic
}

type topic struct {
	current   *policypb.InboundPolicy
	instance  model.Instance // as of current; Name empty when unknown
	listeners map[chan update]struct{}
}

// update is what a stream is handed: the policy and the instance it is
// for (whose service account the stream checks against its client).
type update struct {
	policy   *policypb.InboundPolicy
	instance model.Instance
}

func newHub(log *slog.Logger, compiler *Compiler) *hub {
	return &hub{log: log, compiler: compiler, ready: make(chan struct{}), reported: map[string]bool{}, topics: map[topicKey]*topic{}}
}

func (h *hub) update(in model.InboundInputs) {
	compiled := h.compiler.Update(in)
	h.logErrors(compiled.Errors)
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.compiled == nil
	h.compiled = compiled
	for key, t := range h.topics {
		next, inst := h.policyOf(key)
		if proto.Equal(t.current, next) && inst.ServiceAccount == t.instance.ServiceAccount {
			continue
		}
		t.current, t.instance = next, inst
		for l := range t.listeners {
			offer(l, update{next, inst})
		}
	}
	if first {
		close(h.ready)
	}
}

// policyOf is the policy of key in h.compiled. Called with h.mu held.
func (h *hub) policyOf(key topicKey) (*policypb.InboundPolicy, model.Instance) {
	inst, ok := h.compiled.Instance(key.namespace, key.name)
	if !ok && key.workload != "" {
		inst, ok = h.compiled.ExternalInstanceOf(key.namespace, key.workload)
	}
	if !ok {
		return authzpb.ToProto(nil), model.Instance{}
	}
	in, _ := h.compiled.Inbound(inst.Namespace, inst.Name, key.port)
	return authzpb.ToProto(in), inst
}

// topicKey is what a stream asked for.
type topicKey struct {
	portKey
	workload string
}

// Current returns the last compilation (nil before the first).
func (h *hub) current() *Compiled {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.compiled
}

func (h *hub) logErrors(errs []*policy.Error) {
	now := map[string]bool{}
	for _, e := range errs {
		text := e.Error()
		now[text] = true
		if !h.reported[text] {
			h.log.Warn("invalid authorization policy object: its last good version, if any, stays in force",
				"kind", e.Kind, "namespace", e.Namespace, "name", e.Name, "field", e.Field, "err", text)
		}
	}
	for text := range h.reported {
		if !now[text] {
			h.log.Info("authorization policy problem resolved", "was", text)
		}
	}
	h.reported = now
	if h.invalid != nil {
		objects := map[string]bool{}
		for _, e := range errs {
			objects[e.Kind+" "+e.Namespace+"/"+e.Name] = true
		}
		h.invalid.Set(float64(len(objects)))
	}
}

// watch registers a listener of key after the first compilation; its slot
// holds the current policy at once.
func (h *hub) watch(ctx context.Context, key topicKey) (<-chan update, func(), error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	l := make(chan update, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.topics[key]
	if t == nil {
		t = &topic{listeners: map[chan update]struct{}{}}
		t.current, t.instance = h.policyOf(key)
		h.topics[key] = t
	}
	t.listeners[l] = struct{}{}
	l <- update{t.current, t.instance}
	return l, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(t.listeners, l)
		if len(t.listeners) == 0 {
			delete(h.topics, key)
		}
	}, nil
}

// offer replaces an update not sent yet: a slow stream gets the newest.
func offer(l chan update, u update) {
	select {
	case <-l:
	default:
	}
	l <- u
}
