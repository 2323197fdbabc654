#!/usr/bin/env bash
# Builds the binaries of Skein's test cluster (etcd, kube-apiserver,
# kube-controller-manager, kubectl) from the Go module proxy, at the versions
# pinned in testcluster/etcd/go.mod and testcluster/kube/go.mod, into a cache
# keyed by those versions, and cert-manager's controller (pinned in
# testcluster/certmanager/go.mod) with its CRDs into a directory of its own.
# Tests start them through internal/testenv/cluster.
#
#   scripts/testcluster.sh build        build what is missing; print the directory
#   scripts/testcluster.sh dir          print the directory (built or not)
#   scripts/testcluster.sh certmanager-dir
#                                       print cert-manager's directory (built or not)
#   scripts/testcluster.sh pin K8S ETCD rewrite the wrapper modules for other
#                                       versions, e.g. pin v1.37.2 v3.6.16
#
# The cache lives in $SKEIN_TESTCLUSTER_CACHE, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/skein/testcluster. A second build with the
# binaries present does nothing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
etcd_mod="$root/testcluster/etcd"
kube_mod="$root/testcluster/kube"
certmanager_mod="$root/testcluster/certmanager"
certmanager_module=github.com/cert-manager/cert-manager
cache="${SKEIN_TESTCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skein/testcluster}"
binaries=(etcd kube-apiserver kube-controller-manager kubectl)
kube_tools=(
	k8s.io/kubernetes/cmd/kube-apiserver
	k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kubectl
)

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
# The wrapper modules are their own main modules: no workspace, no toolchain
# switch, checksums from their committed go.sum. Static binaries (no cgo), as
# Kubernetes releases them, so a cache restored on another image still runs.
export GOWORK=off GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0

log() { echo "testcluster: $*" >&2; }

# required_version MODDIR MODULE prints the version MODDIR/go.mod requires.
required_version() {
	awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}

cache_dir() {
	local k8s etcd
	k8s="$(required_version "$kube_mod" k8s.io/kubernetes)"
	etcd="$(required_version "$etcd_mod" go.etcd.io/etcd/server/v3)"
	if [ -z "$k8s" ] || [ -z "$etcd" ]; then
		log "cannot read pinned versions from $kube_mod/go.mod and $etcd_mod/go.mod"
		exit 1
	fi
	echo "$cache/$k8s-$etcd"
}

certmanager_dir() {
	local v
	v="$(required_version "$certmanager_mod" "$certmanager_module")"
	if [ -z "$v" ]; then
		log "cannot read the pinned cert-manager version from $certmanager_mod/go.mod"
		exit 1
	fi
	echo "$cache/cert-manager-$v"
}

# build_certmanager builds cert-manager's controller (the wrapper main in
# testcluster/certmanager over cert-manager's own controller packages) and
# copies the release's CRDs (deploy/crds in the module) beside it.
build_certmanager() {
	local dir v start src
	dir="$(certmanager_dir)"
	[ -x "$dir/cert-manager-controller" ] && [ -d "$dir/crds" ] && return
	v="$(required_version "$certmanager_mod" "$certmanager_module")"
	# Global, as tmp in build: the EXIT trap removes what a failure left.
	ctmp="$(mktemp -d "$cache/.build-cm.XXXXXX")"
	chmod 755 "$ctmp"
	trap 'rm -rf "${tmp:-}" "${ctmp:-}"' EXIT
	start=$SECONDS
	log "building cert-manager's controller ($v) ..."
	(cd "$certmanager_mod" && go build -ldflags='-s -w' -o "$ctmp/cert-manager-controller" .)
	src="$(cd "$certmanager_mod" && go list -m -f '{{.Dir}}' "$certmanager_module")"
	mkdir -p "$ctmp/crds"
	cp "$src"/deploy/crds/*.yaml "$ctmp/crds/"
	chmod -R u+w "$ctmp/crds"
	log "cert-manager's controller built in $((SECONDS - start))s"
	rm -rf "$dir"
	mv "$ctmp" "$dir"
}

have_all() {
	local b
	for b in "${binaries[@]}"; do
		[ -x "$1/$b" ] || return 1
	done
}

build() {
	local dir start
	dir="$(cache_dir)"
	if have_all "$dir" && [ -x "$(certmanager_dir)/cert-manager-controller" ]; then
		echo "$dir"
		return
	fi
	mkdir -p "$cache"
	# Two test processes asking at once: the second waits for the first.
	exec 9>"$cache/.lock"
	flock 9
	build_certmanager
	if have_all "$dir"; then
		echo "$dir"
		return
	fi
	# Global, not local: the EXIT trap runs after build has returned.
	tmp="$(mktemp -d "$cache/.build.XXXXXX")"
	trap 'rm -rf "$tmp" "${ctmp:-}"' EXIT

	start=$SECONDS
	log "building etcd ($(required_version "$etcd_mod" go.etcd.io/etcd/server/v3)) ..."
	(cd "$etcd_mod" && go build -ldflags='-s -w' -o "$tmp/etcd" .)
	log "etcd built in $((SECONDS - start))s"

	start=$SECONDS
	log "building ${kube_tools[*]##*/} ($(required_version "$kube_mod" k8s.io/kubernetes)); about 10 min cold on 2 cores ..."
	(cd "$kube_mod" && go build -ldflags='-s -w' -o "$tmp/" "${kube_tools[@]}")
	log "kubernetes binaries built in $((SECONDS - start))s"

	mkdir -p "$dir"
	local b
	for b in "${binaries[@]}"; do
		mv -f "$tmp/$b" "$dir/$b"
	done
	echo "$dir"
}

# pin_etcd VERSION writes testcluster/etcd/go.mod for etcd VERSION.
pin_etcd() {
	local version="$1"
	cat >"$etcd_mod/go.mod" <<EOF
// Generated by scripts/testcluster.sh pin; not part of the main module.
module github.com/skeinmesh/skein/testcluster/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $version
EOF
	rm -f "$etcd_mod/go.sum"
	(cd "$etcd_mod" && GOFLAGS=-mod=mod go mod tidy)
}

# pin_kube VERSION writes testcluster/kube/go.mod for k8s.io/kubernetes
# VERSION: its staging modules (k8s.io/api, k8s.io/apiserver, ...) are
# replaced by the published k8s.io/NAME v0.MINOR.PATCH, the list taken from
# that version's own go.mod.
pin_kube() {
	local version="$1" staging gomod
	staging="v0.${version#v1.}"
	gomod="$(cd /tmp && GOFLAGS= go mod download -json "k8s.io/kubernetes@$version" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
	[ -f "$gomod" ] || { log "no go.mod for k8s.io/kubernetes@$version"; exit 1; }
	{
		echo "// Generated by scripts/testcluster.sh pin; not part of the main module."
		echo "module github.com/skeinmesh/skein/testcluster/kube"
		echo
		grep -E '^go [0-9]' "$gomod"
		grep -E '^godebug ' "$gomod" || true
		echo
		echo "tool ("
		printf '\t%s\n' "${kube_tools[@]}"
		echo ")"
		echo
		echo "require k8s.io/kubernetes $version"
		echo
		echo "replace ("
		awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\/src\// { printf "\t%s => %s %s\n", $1, $1, v }' "$gomod"
		echo ")"
	} >"$kube_mod/go.mod"
	rm -f "$kube_mod/go.sum"
	(cd "$kube_mod" && GOFLAGS=-mod=mod go mod tidy)
}

case "${1:-build}" in
build) build ;;
dir) cache_dir ;;
certmanager-dir) certmanager_dir ;;
pin)
	[ $# -eq 3 ] || { echo "usage: $0 pin K8S_VERSION ETCD_VERSION" >&2; exit 2; }
	mkdir -p "$etcd_mod" "$kube_mod"
	pin_etcd "$3"
	pin_kube "$2"
	cache_dir
	;;
*)
	echo "usage: $0 [build|dir|certmanager-dir|pin K8S_VERSION ETCD_VERSION]" >&2
	exit 2
	;;
esac
