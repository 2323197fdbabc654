// Package netfilter programs one workload's network namespace so that its
// TCP traffic passes through the sidecar proxy, the job of skein-init. It
// only adds its own chains (SKEIN_*), jumps to them and, in tproxy mode, one
// policy-routing rule and route; Cleanup removes exactly those and leaves
// every other rule alone. It is not a general firewall library.
//
// Redirect mode (default), nat table:
//
//	PREROUTING -p tcp -> SKEIN_INBOUND:  admin port and skipped ports RETURN,
//	                                     other TCP REDIRECT to InboundPort
//	OUTPUT -p tcp     -> SKEIN_OUTBOUND: the proxy's own uid RETURN,
//	                                     -o lo RETURN, skipped ports and
//	                                     CIDRs RETURN, other TCP REDIRECT to
//	                                     OutboundPort
//
// The proxy reads the original destination with SO_ORIGINAL_DST.
//
// "-o lo -j RETURN" is the simple choice: everything that stays inside the
// pod bypasses the proxy, including the application calling its own pod IP
// (that also leaves via lo). Linkerd instead sends such self-calls through
// the inbound side; Skein does not, so a pod calling itself gets no mesh
// metrics or policy for that call.
//
// Tproxy mode keeps the client's source address visible to the application
// (the proxy connects to the application from the client's address with
// IP_TRANSPARENT and SO_MARK 0x539). Inbound uses the mangle table as Istio
// does; outbound stays REDIRECT as above:
//
//	PREROUTING -p tcp -> SKEIN_INBOUND:  packets already marked 0x539 (the
//	    proxy's spoofed connections to the app, arriving on lo) save their
//	    mark to the connection and RETURN; -i lo, the admin port and skipped
//	    ports RETURN; packets of an existing transparent socket go to
//	    SKEIN_DIVERT (MARK 0x539, ACCEPT); other TCP not to 127.0.0.1 is
//	    TPROXY'd to InboundPort with mark 0x539.
//	OUTPUT -p tcp -> SKEIN_CONNMARK: replies of connections marked 0x539
//	    get the mark back (CONNMARK --restore-mark).
//	ip rule fwmark 0x539 lookup 133; ip route local default dev lo table 133:
//	    marked packets are delivered locally, to the proxy's sockets.
//
// The proxy's inbound listener must set IP_TRANSPARENT in tproxy mode, and
// the original destination is the accepted socket's local address.
//
// Every change is one `iptables-restore --noflush` script per address
// family, so each table changes atomically; applying twice leaves the same
// ruleset as applying once.
package netfilter
