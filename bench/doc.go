// Package bench measures what the data plane costs: the latency Skein's
// client and server proxies add to a request, and the CPU and memory each
// proxy uses, against the same traffic sent with no proxy at all.
//
// It builds a two-host network (a load generator and a server, see
// internal/netns), runs fortio at fixed request rates over HTTP/1.1 and gRPC,
// and interleaves the scenarios (direct, skein, direct, skein, ...) so that
// noise on the machine hits every scenario alike. A scenario is one entry in
// the Scenarios table; comparing another proxy (HAProxy, nginx) or mTLS is a
// new entry there. It needs root. It is a harness, not a test of behaviour:
// the numbers it reports are for people to read (docs/performance.md).
package bench
