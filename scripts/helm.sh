#!/usr/bin/env bash
# The Helm CLI, pinned and built from the Go module proxy, for CI's chart
# checks and the tests that compare `skein install` with Helm's own
# rendering and installing of charts/skein.
#
#   scripts/helm.sh path     installs it if needed, prints its path
#   scripts/helm.sh check    helm lint charts/skein, and helm template with
#                            the default values (trust material given) and
#                            with every option on
#
# Pinned: Helm v3.22.0, the version go.mod's helm.sh/helm/v3 library is,
# installed under $HOME/.cache/skein/tools/helm-<version>.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
TOOLS="$HOME/.cache/skein/tools"

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

ensure_helm() {
	local dir="$TOOLS/helm-$HELM_VERSION"
	if [ ! -x "$dir/helm" ]; then
		echo "helm: installing helm $HELM_VERSION" >&2
		mkdir -p "$dir"
		GOBIN="$dir" GOFLAGS= go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
	fi
	echo "$dir/helm"
}

check() {
	local helm
	helm=$(ensure_helm)
	tmp=$(mktemp -d) # global: the EXIT trap reads it
	trap 'rm -rf "$tmp"' EXIT
	# Trust material as a user gives it: files from `skein identity generate`
	# and the webhook's, passed as values.
	go run ./cmd/skein install --print-values >"$tmp/values.yaml"
	"$helm" lint --strict charts/skein -f "$tmp/values.yaml"
	"$helm" template skein charts/skein -n skein --include-crds -f "$tmp/values.yaml" >/dev/null
	"$helm" template skein charts/skein -n mesh --include-crds -f "$tmp/values.yaml" \
		--set controller.replicas=3 --set prometheusURL=http://prometheus.monitoring:9090 \
		--set gatewayAPI.installCRDs=true --set grafana.dashboards=true >/dev/null
	# The schema refuses a bad value, naming the field.
	if out=$("$helm" template skein charts/skein -f "$tmp/values.yaml" --set controller.logLevel=loud 2>&1); then
		echo "helm: the chart took controller.logLevel=loud" >&2
		exit 1
	elif ! grep -q logLevel <<<"$out"; then
		echo "helm: refusing controller.logLevel=loud, the chart did not name it: $out" >&2
		exit 1
	fi
	echo "helm: charts/skein lints and renders"
}

case "${1:-path}" in
path) ensure_helm ;;
check) check ;;
*)
	echo "usage: $0 [path|check]" >&2
	exit 2
	;;
esac
