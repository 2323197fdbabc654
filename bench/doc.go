// Package bench measures what the mesh costs. Run measures the data plane:
// the latency Skein's client and server proxies add to a request (with and
// without mTLS), and the CPU and memory each proxy uses, against the same
// traffic sent with no proxy at all and through one hop of HAProxy, nginx
// and Caddy, at fixed rates and at saturation. RunControlPlane measures the
// control plane: how fast a change in the manifests reaches 1,000
// destination streams on a service of 5,000 endpoints, and what that costs
// the controller.
//
// Run builds a three-host network (a load generator, a server and a
// controller, see internal/netns), runs fortio over HTTP/1.1 and gRPC, and
// interleaves the scenarios (direct, skein, skein-mtls, haproxy, ...) so that
// noise on the machine hits every scenario alike. A scenario is one entry
// in the Scenarios table. It needs root. RunControlPlane runs on loopback.
// Both are harnesses, not tests of behaviour: the numbers they report are
// for people to read (docs/performance.md).
package bench
