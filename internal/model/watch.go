package model

import (
	"context"
)

var _ Watcher = (*Model)(nil)

// topic is one watched destination: its current set and its listeners.
// Topics exist only while watched. Fields are guarded by Model.mu.
type topic struct {
	key       topicKey
	current   *EndpointSet
	listeners map[*listener]struct{}
	// changes counts how often current was replaced, resolves how often
	// it was computed (tests read them).
	changes, resolves int
}

// listener is one Watch call. Its channel holds at most the latest set not
// yet delivered; only the model, under its lock, sends on it.
type listener struct {
	latest chan *EndpointSet
}

// offer replaces any undelivered set with s. It never blocks: the lock
// holder is the only sender and it empties the slot first.
func (l *listener) offer(s *EndpointSet) {
	select {
	case <-l.latest:
	default:
	}
	l.latest <- s
}

// Watch implements Watcher. dst is "name.namespace.svc.<cluster-domain>:port"
// or "ip:port"; other names are valid but never exist. It fails only when
// dst is not host:port.
func (m *Model) Watch(ctx context.Context, dst string, update func(EndpointSet)) error {
	key, err := m.parseDst(dst)
	if err != nil {
		return err
	}
	l := &listener{latest: make(chan *EndpointSet, 1)}
	m.mu.Lock()
	t := m.topic(key)
	t.listeners[l] = struct{}{}
	l.offer(t.current)
	m.mu.Unlock()

	m.activeWatches.Add(1)
	go m.deliver(ctx, t, l, update)
	return nil
}

// deliver is the watch's goroutine: it hands sets to update one at a time
// until ctx is done, then unregisters the listener.
func (m *Model) deliver(ctx context.Context, t *topic, l *listener, update func(EndpointSet)) {
	defer m.activeWatches.Add(-1)
	defer m.unlisten(t, l)
	for {
		select {
		case <-ctx.Done():
			return
		case set := <-l.latest:
			if ctx.Err() != nil {
				return
			}
			update(*set)
		}
	}
}

// topic returns the topic of key, creating and indexing it if nobody
// watches it yet. Called with m.mu held.
func (m *Model) topic(key topicKey) *topic {
	if t, ok := m.topics[key]; ok {
		return t
	}
	t := &topic{key: key, current: m.stamp(m.resolve(key)), listeners: map[*listener]struct{}{}}
	m.topics[key] = t
	switch key.kind {
	case byServiceName:
		addTo(m.topicsByService, key.service, t, struct{}{})
	case byIP:
		addTo(m.topicsByIP, key.addr, t, struct{}{})
	}
	return t
}

func (m *Model) unlisten(t *topic, l *listener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(t.listeners, l)
	if len(t.listeners) > 0 {
		return
	}
	delete(m.topics, t.key)
	switch t.key.kind {
	case byServiceName:
		removeFrom(m.topicsByService, t.key.service, t)
	case byIP:
		removeFrom(m.topicsByIP, t.key.addr, t)
	}
}

// publish recomputes every watched destination a write touched and offers
// the new set to the listeners of those that changed. Called with m.mu
// held.
func (m *Model) publish(c *changes) {
	touched := map[*topic]struct{}{}
	for svcKey := range c.services {
		for t := range m.topicsByService[svcKey] {
			touched[t] = struct{}{}
		}
		if svc := m.services[svcKey].effective(); svc != nil {
			for _, ip := range svc.ClusterIPs {
				c.ip(ip)
			}
		}
	}
	for ip := range c.ips {
		for t := range m.topicsByIP[ip] {
			touched[t] = struct{}{}
		}
	}
	for t := range touched {
		t.resolves++
		next := m.resolve(t.key)
		if setsEqual(t.current, next) {
			continue
		}
		m.stamp(next)
		t.current = next
		t.changes++
		for l := range t.listeners {
			l.offer(next)
		}
	}
}

// ActiveWatches is the number of watches whose goroutine is running.
func (m *Model) ActiveWatches() int { return int(m.activeWatches.Load()) }

// stamp gives a set that resolve made its version; the shared set of
// unknown destinations keeps 0. Called with m.mu held.
func (m *Model) stamp(set *EndpointSet) *EndpointSet {
	if set != notFound {
		m.versions++
		set.Version = m.versions
	}
	return set
}
