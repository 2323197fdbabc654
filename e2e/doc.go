// Package e2e holds the end-to-end tests of the data plane: real skein-proxy
// and skein-init processes in network namespaces ("test hosts"), real
// grpc-go and net/http clients and servers, nothing faked. The tests need
// root and skip without it.
package e2e
