package votebot

import (
	"maps"
	"slices"
)

// Totals counts requests and failures by path ("/api/vote").
type Totals map[string]Count

// Count is the number of requests to one path and how many failed.
type Count struct {
	Requests int
	Failures int
}

func (t Totals) add(path string, failed bool) {
	c := t[path]
	c.Requests++
	if failed {
		c.Failures++
	}
	t[path] = c
}

// Sum returns the requests and failures of every path together.
func (t Totals) Sum() (requests, failures int) {
	for _, c := range t {
		requests += c.Requests
		failures += c.Failures
	}
	return requests, failures
}

// Paths returns the paths counted, sorted.
func (t Totals) Paths() []string {
	return slices.Sorted(maps.Keys(t))
}

func (t Totals) clone() Totals { return maps.Clone(t) }
