// Package release says how Skein's binaries are built, for the builds made
// from Go code (skein-bench, the end-to-end tests); the Makefile's build
// targets say the same (TestMakefileBuildsAsRelease holds them together).
package release

import "os"

// Tags are the build tags of every Skein binary.
//
// grpcnotrace keeps grpc-go from linking golang.org/x/net/trace, whose
// html/template calls methods by name through reflection. A binary that can
// do that keeps every exported method of every type it links, because the
// linker cannot tell which will be called; without it skein-proxy is
// 3.4 MB smaller (23.7 to 20.2 MB), and since a running proxy ends up with
// nearly all of its mapped binary resident, about 2.3 MB smaller in memory
// too. Skein never enables gRPC's request tracing (/debug/requests), which
// is all the tag removes.
const Tags = "grpcnotrace"

// Env is what a build adds to the environment. CGO_ENABLED=0: a static
// binary, which runs on any Linux image and maps 1.4 MB less than one
// linked against libc (skein-proxy under load). Skein needs nothing from
// cgo: Go's own resolver reads /etc/hosts and /etc/resolv.conf as libc
// does for the "files dns" lookups containers have.
var Env = []string{"CGO_ENABLED=0"}

// Environ is this process's environment with Env added, for a go build.
func Environ() []string { return append(os.Environ(), Env...) }
