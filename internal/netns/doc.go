// Package netns builds throw-away "pods" on one Linux machine: network
// namespaces joined by a hub namespace that routes between them and
// load-balances virtual service IPs the way kube-proxy does. Tests use it to
// run real processes on real addresses, and `skein up` uses it for the local
// mesh.
//
// Layout of one Network (ID is a short random hex string):
//
//	skein-ID-hub    bridge br0 198.18.0.1/16, ip_forward=1, send_redirects=0,
//	                nat PREROUTING -> SKEIN-SERVICES -> one SVC-<vip>-<port>
//	                chain per service (DNAT to a random backend),
//	                route "local 198.19.0.0/16 dev lo" so a VIP without
//	                backends refuses connections (RST) instead of hanging.
//	skein-ID-NAME   lo, eth0 198.18.0.N/32 (veth to br0), routes
//	                "198.18.0.1 dev eth0" and "default via 198.18.0.1 onlink".
//
// Hosts get /32 addresses and reach even each other through the hub's IP
// layer, so the hub's conntrack sees both directions of every connection
// and DNAT to a backend needs no hairpin tricks. Addresses come from
// 198.18.0.0/15 (RFC 2544, never routed on real networks).
//
// The root namespace is never touched: no links, routes, rules or sysctls
// are created outside the namespaces this package makes. Ownership of each
// Network is recorded in /run/skein/netns/ID (creator PID and start time)
// so that CleanStale can remove whatever a crashed run left behind.
//
// Everything here needs root and the `ip`, `iptables-restore` and `sysctl`
// tools (iproute2, iptables, procps); CommandAs also needs `setpriv`
// (util-linux).
package netns
