// Package mirrordiff is the controller's MirrorDiffs service: proxies
// report examples of mirror answers that differed from the primary's
// (proto/mirror), and the controller keeps a bounded few per route for
// `skein diff` (read through the metrics API). Counts are not kept here:
// they are mirror_total in Prometheus.
package mirrordiff

import (
	"slices"
	"sync"
	"time"
)

// Bounds of what the controller keeps. Route names come from the
// controller's own configuration, but a proxy reports them: the store
// bounds them anyway, and everything else it keeps.
const (
	// PerRoute is how many examples are kept per route (oldest dropped).
	PerRoute = 10
	// MaxRoutes is how many routes examples are kept for; past it, the
	// route reported to longest ago is dropped.
	MaxRoutes = 1000
	// MaxRouteName is the longest route name accepted ("namespace/name":
	// 63 + 1 + 253).
	MaxRouteName = 317
	// MaxPerReport is the most examples one report may carry.
	MaxPerReport = 100
	// maxField bounds every other string and each body prefix.
	maxField = 256
	// maxHeaders bounds the differing fields of one example.
	maxHeaders = 32
)

// Example is one mismatch as `skein diff -o json` shows it.
type Example struct {
	Time          time.Time    `json:"time"`
	Route         string       `json:"route"`
	Backend       string       `json:"backend"`
	Proxy         string       `json:"proxy"` // the reporting proxy's identity
	Method        string       `json:"method"`
	Path          string       `json:"path"`
	PrimaryStatus int          `json:"primary_status"`
	MirrorStatus  int          `json:"mirror_status"`
	Headers       []HeaderDiff `json:"headers"`
	BodyDiffers   bool         `json:"body_differs"`
	PrimaryBody   string       `json:"primary_body"`
	MirrorBody    string       `json:"mirror_body"`
}

// HeaderDiff is one compared field whose values differ (redacted by the
// proxy).
type HeaderDiff struct {
	Name    string `json:"name"`
	Primary string `json:"primary"`
	Mirror  string `json:"mirror"`
}

// Store keeps the recent examples of each route, bounded.
type Store struct {
	mu     sync.Mutex
	routes map[string]*routeExamples
	seq    uint64
}

type routeExamples struct {
	updated uint64    // the store's seq at the last add: the oldest route goes first
	ring    []Example // oldest first
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{routes: make(map[string]*routeExamples)} }

// Add keeps ex (already checked and clipped) as its route's newest.
func (s *Store) Add(ex Example) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	r := s.routes[ex.Route]
	if r == nil {
		if len(s.routes) >= MaxRoutes {
			s.dropOldestRoute()
		}
		r = &routeExamples{}
		s.routes[ex.Route] = r
	}
	r.updated = s.seq
	if len(r.ring) == PerRoute {
		r.ring = append(r.ring[:0], r.ring[1:]...)
	}
	r.ring = append(r.ring, ex)
}

func (s *Store) dropOldestRoute() {
	var oldest string
	var at uint64
	for name, r := range s.routes {
		if oldest == "" || r.updated < at {
			oldest, at = name, r.updated
		}
	}
	delete(s.routes, oldest)
}

// Recent returns route's examples, newest first.
func (s *Store) Recent(route string) []Example {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.routes[route]
	if r == nil {
		return nil
	}
	out := slices.Clone(r.ring)
	slices.Reverse(out)
	return out
}

// Routes returns the names of the routes with examples, sorted.
func (s *Store) Routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.routes))
	for name := range s.routes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
