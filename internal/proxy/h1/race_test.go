//go:build race

package h1

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
