#!/usr/bin/env bash
# Installs what Skein's build, tests and local mesh need on a Debian machine.
# Run as root. Safe to run again.
set -euo pipefail

packages=(iptables iproute2 util-linux procps tcpdump curl openssl ca-certificates prometheus chromium)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
go version >/dev/null

# h2spec, the HTTP/2 conformance suite the e2e tests run against the proxy's
# listeners (e2e/h2spec_test.go looks for it here), built once per version.
# h2spec has no go.mod: its own code is pinned, its few dependencies resolve
# to their newest versions at install time.
H2SPEC_VERSION=v2.2.1
h2spec_dir="$HOME/.cache/skein/tools/h2spec-$H2SPEC_VERSION"
if [ ! -x "$h2spec_dir/h2spec" ]; then
	echo "setup: installing h2spec $H2SPEC_VERSION" >&2
	mkdir -p "$h2spec_dir"
	GOBIN="$h2spec_dir" GOFLAGS= go install "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION+incompatible"
fi
echo "setup: ok ($(go version | cut -d' ' -f3), $(iptables --version), h2spec $H2SPEC_VERSION)"
