// Package outbound sends the workload's own outgoing traffic on: it resolves
// each request's destination through discovery, balances requests (HTTP) or
// connections (opaque TCP) over the destination's endpoints, and falls back
// to the original destination when discovery does not know it.
package outbound
