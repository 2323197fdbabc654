#!/usr/bin/env bash
# Installs what Skein's build, tests and local mesh need on a Debian machine.
# Run as root. Safe to run again.
set -euo pipefail

packages=(iptables iproute2 util-linux procps tcpdump curl openssl ca-certificates prometheus)
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
echo "setup: ok ($(go version | cut -d' ' -f3), $(iptables --version))"
