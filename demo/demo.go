// Package demo holds the manifests of the bundled demo application that
// `skein demo` (and `skein up` with no arguments) runs in the local mesh.
// The application itself is in the subpackages (emoji, voting, web,
// votebot) and the skein-demo binary.
package demo

import _ "embed"

// Manifests is manifests/demo.yaml: Services web, emoji and voting and the
// Workloads web (1 replica), emoji (3), voting (2) and vote-bot (1), all in
// namespace "demo". Write it to a file to hand it to the local mesh.
//
//go:embed manifests/demo.yaml
var Manifests []byte

// ManifestFile is the name to give Manifests when writing it out.
const ManifestFile = "demo.yaml"

// Namespace is the namespace of every demo object.
const Namespace = "demo"
