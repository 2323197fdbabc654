// Package buildtags names the build tags Skein's binaries are built with,
// for the builds made from Go code (skein-bench, the end-to-end tests); the
// Makefile's TAGS says the same for `make build`.
package buildtags

// Release are the tags of every Skein binary.
//
// grpcnotrace keeps grpc-go from linking golang.org/x/net/trace, whose
// html/template calls methods by name through reflection. A binary that can
// do that keeps every exported method of every type it links, because the
// linker cannot tell which will be called; without it skein-proxy is
// 3.4 MB smaller (23.7 to 20.2 MB), and since a running proxy ends up with
// nearly all of its mapped binary resident, about 2.3 MB smaller in memory
// too. Skein never enables gRPC's request tracing (/debug/requests), which
// is all the tag removes.
const Release = "grpcnotrace"
