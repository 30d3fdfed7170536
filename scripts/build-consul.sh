#!/usr/bin/env bash
# Builds the Consul agent the tests run (bin/consul) from the Go module
# github.com/hashicorp/consul, pinned in tests/tools/go.mod, unless it is
# already there. The first build takes 3.5 to 6 minutes on 2 cores (6 with
# nothing in Go's module and build caches); later runs return at once.
#
#   scripts/build-consul.sh          build bin/consul if missing
#   FORCE=1 scripts/build-consul.sh  rebuild it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

out="$PWD/bin/consul"
want=$(awk '$1 == "require" && $2 == "github.com/hashicorp/consul" { print $3 }' tests/tools/go.mod)
if [ -z "$want" ]; then
	echo "error: tests/tools/go.mod does not require github.com/hashicorp/consul" >&2
	exit 1
fi

if [ -x "$out" ] && [ -z "${FORCE:-}" ]; then
	have=$("$out" version 2>/dev/null | awk 'NR == 1 { print $2 }')
	if [ "$have" = "$want" ]; then
		echo "==> bin/consul $have is present (cached); FORCE=1 rebuilds it"
		exit 0
	fi
	echo "==> bin/consul is ${have:-unreadable}, tests/tools/go.mod pins $want: rebuilding"
fi

echo "==> building bin/consul $want from tests/tools (go build github.com/hashicorp/consul; 3.5-6 minutes the first time)"
mkdir -p bin
start=$(date +%s)
# Build to a temporary name and rename, so an interrupted build never leaves
# a half-written bin/consul that later runs would take as cached.
(cd tests/tools && go build -trimpath -ldflags "-s -w" -o "$out.tmp" github.com/hashicorp/consul)
mv "$out.tmp" "$out"
echo "==> built $("$out" version | head -n 1) in $(($(date +%s) - start))s: $out"
