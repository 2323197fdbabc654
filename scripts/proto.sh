#!/usr/bin/env bash
# Generates the Go code for proto/*/*.proto with pinned tools, beside the
# .proto files. `scripts/proto.sh check` instead generates into a temporary
# copy and fails if the committed code differs (stale or hand-edited).
#
# Pinned: protoc from Debian 12's protobuf-compiler (3.21.12), protoc-gen-go
# and protoc-gen-go-grpc at the versions below, installed under
# $HOME/.cache/skein/tools so nothing depends on what happens to be on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_VERSION=3.21.12
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
TOOLS="$HOME/.cache/skein/tools"

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

ensure_protoc() {
	if ! command -v protoc >/dev/null; then
		echo "proto: installing protobuf-compiler" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq protobuf-compiler >/dev/null
	fi
	local have
	have=$(protoc --version | awk '{print $2}')
	if [ "$have" != "$PROTOC_VERSION" ]; then
		echo "proto: protoc is $have, want $PROTOC_VERSION (Debian 12 protobuf-compiler); the generated headers would differ" >&2
		exit 1
	fi
}

# ensure_plugin NAME MODULE_PATH VERSION -> prints the plugin's path
ensure_plugin() {
	local name=$1 pkg=$2 version=$3
	local dir="$TOOLS/$name-$version"
	if [ ! -x "$dir/$name" ]; then
		echo "proto: installing $name $version" >&2
		mkdir -p "$dir"
		GOBIN="$dir" GOFLAGS= go install "$pkg@$version" >&2
	fi
	echo "$dir/$name"
}

# generate ROOT: writes the .pb.go files beside ROOT/proto/*/*.proto.
generate() {
	local root=$1
	local gen_go gen_grpc
	gen_go=$(ensure_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION")
	gen_grpc=$(ensure_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION")
	(
		cd "$root"
		for file in proto/*/*.proto; do
			protoc \
				--plugin=protoc-gen-go="$gen_go" \
				--plugin=protoc-gen-go-grpc="$gen_grpc" \
				-I . \
				--go_out=. --go_opt=paths=source_relative \
				--go-grpc_out=. --go-grpc_opt=paths=source_relative \
				"$file"
		done
	)
}

ensure_protoc
case "${1:-generate}" in
generate)
	rm -f proto/*/*.pb.go
	generate .
	echo "proto: generated $(ls proto/*/*.pb.go | wc -l) files"
	;;
check)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp/proto"
	cp -r proto/. "$tmp/proto/"
	rm -f "$tmp"/proto/*/*.pb.go
	generate "$tmp"
	if ! diff -ru --exclude='*.proto' proto "$tmp/proto"; then
		echo "proto-check: the generated code in proto/ is stale or was edited by hand; run 'make proto' and commit the result" >&2
		exit 1
	fi
	echo "proto-check: generated code is up to date"
	;;
*)
	echo "usage: $0 [generate|check]" >&2
	exit 2
	;;
esac
