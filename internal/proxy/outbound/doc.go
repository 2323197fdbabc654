// Package outbound sends the workload's own outgoing traffic on: it resolves
// each request's destination through discovery, balances requests (HTTP) or
// connections (opaque TCP) over the destination's endpoints, and falls back
// to the original destination when discovery says it does not know it. A
// proxy with an identity never falls back on a guess: until discovery has
// answered, or for an address it once reported meshed, it refuses.
package outbound
