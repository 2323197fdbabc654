#!/usr/bin/env bash
# Generates the CustomResourceDefinitions in charts/skein/crds/ (the chart's, labelled as Skein's) and the DeepCopy
# methods (zz_generated.deepcopy.go beside the types) from the Go types in
# api/v1alpha1 (skein.io) and api/policy/v1alpha1 (policy.skein.io) with a
# pinned controller-gen. `scripts/crds.sh check` instead
# generates into a temporary directory and fails if the committed files
# differ (stale or edited by hand).
#
# Pinned: controller-gen v0.23.0, built against k8s.io v0.37 like go.mod,
# installed under $HOME/.cache/skein/tools so nothing depends on what
# happens to be on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

CONTROLLER_GEN_VERSION=v0.23.0
TOOLS="$HOME/.cache/skein/tools"
CRD_DIR=charts/skein/crds
# The API packages; each gets its own zz_generated.deepcopy.go.
API_PACKAGES=(api/v1alpha1 api/policy/v1alpha1)
DEEPCOPY=zz_generated.deepcopy.go

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

# ensure_controller_gen -> prints the tool's path
ensure_controller_gen() {
	local dir="$TOOLS/controller-gen-$CONTROLLER_GEN_VERSION"
	if [ ! -x "$dir/controller-gen" ]; then
		echo "crds: installing controller-gen $CONTROLLER_GEN_VERSION" >&2
		mkdir -p "$dir"
		GOBIN="$dir" GOFLAGS= go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION" >&2
	fi
	echo "$dir/controller-gen"
}

# generate CRD_OUT DEEPCOPY_ROOT: writes the CRDs into the directory CRD_OUT
# and each package's DeepCopy methods to DEEPCOPY_ROOT/<package>/.
generate() {
	local crd_out=$1 deepcopy_root=$2 gen tmp pkg
	gen=$(ensure_controller_gen)
	tmp=$(mktemp -d)
	# controller-gen writes the deepcopy file beside the types; generate into
	# a copy of the packages so that `check` leaves the tree alone.
	for pkg in "${API_PACKAGES[@]}"; do
		mkdir -p "$tmp/$pkg"
		cp "$pkg"/*.go "$tmp/$pkg/"
		rm -f "$tmp/$pkg/$DEEPCOPY"
	done
	cp go.mod go.sum "$tmp/"
	(cd "$tmp" && "$gen" object paths=./api/... crd paths=./api/... output:crd:dir="$tmp/crd")
	mkdir -p "$crd_out"
	rm -f "$crd_out"/*.yaml
	cp "$tmp"/crd/*.yaml "$crd_out/"
	# Helm installs the chart's crds/ as they are (no templating): the label
	# that marks everything Skein installs is written here.
	sed -i 's/^metadata:$/metadata:\n  labels:\n    app.kubernetes.io\/part-of: skein/' "$crd_out"/*.yaml
	for pkg in "${API_PACKAGES[@]}"; do
		mkdir -p "$deepcopy_root/$pkg"
		cp "$tmp/$pkg/$DEEPCOPY" "$deepcopy_root/$pkg/$DEEPCOPY"
	done
	rm -rf "$tmp"
}

case "${1:-generate}" in
generate)
	generate "$CRD_DIR" .
	echo "crds: generated $(ls "$CRD_DIR"/*.yaml | wc -l) CRDs and ${#API_PACKAGES[@]} $DEEPCOPY files"
	;;
check)
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
	generate "$out/crd" "$out/deepcopy"
	stale=0
	diff -ru "$CRD_DIR" "$out/crd" || stale=1
	for pkg in "${API_PACKAGES[@]}"; do
		diff -u "$pkg/$DEEPCOPY" "$out/deepcopy/$pkg/$DEEPCOPY" || stale=1
	done
	if [ "$stale" != 0 ]; then
		echo "crds-check: $CRD_DIR or a $DEEPCOPY is stale or was edited by hand; run 'make crds' and commit the result" >&2
		exit 1
	fi
	echo "crds-check: CRDs and deepcopy are up to date"
	;;
*)
	echo "usage: $0 [generate|check]" >&2
	exit 2
	;;
esac
