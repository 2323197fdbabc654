package metrics

import "sync"

// seriesCache keeps what was made once per label set (a request's
// recorder, a connection's series, an authorization counter): prometheus'
// own lookup checks and hashes every label value on every call, and these
// are looked up once per request or connection. It holds one entry per
// label set the Registry exports, no more.
type seriesCache[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

// get returns k's entry, made by newEntry (under the cache's lock) when k
// is new.
func (c *seriesCache[K, V]) get(k K, newEntry func() V) V {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m[k]; ok {
		return v
	}
	if c.m == nil {
		c.m = make(map[K]V)
	}
	v = newEntry()
	c.m[k] = v
	return v
}
