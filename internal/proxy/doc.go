// Package proxy is the data plane's assembly: it reads a Config, opens the
// outbound, inbound and admin listeners, detects each connection's protocol
// and hands it to the HTTP server or the opaque TCP path of its direction,
// and drains gracefully on shutdown. The work itself lives in the
// subpackages; this one only wires them together.
package proxy
