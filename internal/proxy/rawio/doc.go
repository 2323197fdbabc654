// Package rawio reads and writes the proxy's TCP connections with system
// calls that Go's scheduler is not told about (syscall.RawSyscall inside the
// connection's RawConn), while still waiting for readiness, and honouring
// deadlines and Close, in Go's netpoller as net.Conn does.
//
// Why: every system call made the ordinary way (entersyscall) first checks
// whether Go's sysmon thread is in its deep sleep, and wakes it when it is.
// sysmon sleeps deeply whenever every P is idle, which for a sidecar means
// between any two requests, and once woken by a system call it polls every
// 20 µs until the Ps are idle again. In skein-bench (mTLS pair, 1,000
// requests a second) those wake-ups and polls were 18% of a proxy's CPU
// samples. The reads and writes of a connection are the system calls of the
// request path; made raw, they leave sysmon asleep while nothing else needs
// it, at no cost to an idle proxy. Readiness comes from the netpoller, which
// never wakes sysmon.
//
// A raw system call keeps its P while it runs. The sockets are non-blocking,
// so a read or write returns at once (EAGAIN when it would block, and then
// the netpoller waits), which is all the scheduler would have done.
package rawio
