#!/usr/bin/env bash
# Builds the Litestream binary the backup interoperability test runs
# (bin/litestream: `litestream restore` of a bucket litefs wrote) from the Go
# module github.com/benbjohnson/litestream, pinned in
# tests/tools/litestream/go.mod, unless the pinned version is already there.
# The first build takes a few minutes on 2 cores; later runs return at once.
#
#   scripts/build-litestream.sh          build bin/litestream if missing
#   FORCE=1 scripts/build-litestream.sh  rebuild it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

mod=github.com/benbjohnson/litestream
out="$PWD/bin/litestream"
stamp="$out.version"
want=$(awk -v m="$mod" '$1 == "require" && $2 == m { print $3 } $1 == m { print $2 }' tests/tools/litestream/go.mod | head -n 1)
if [ -z "$want" ]; then
	echo "error: tests/tools/litestream/go.mod does not require $mod" >&2
	exit 1
fi

if [ -x "$out" ] && [ -z "${FORCE:-}" ]; then
	have=$(cat "$stamp" 2>/dev/null || true)
	if [ "$have" = "$want" ]; then
		echo "==> bin/litestream $have is present (cached); FORCE=1 rebuilds it"
		exit 0
	fi
	echo "==> bin/litestream is ${have:-of unknown version}, tests/tools/litestream/go.mod pins $want: rebuilding"
fi

echo "==> building bin/litestream $want from tests/tools/litestream (go build $mod/cmd/litestream; a few minutes the first time)"
mkdir -p bin
start=$(date +%s)
# Build to a temporary name and rename, so an interrupted build never leaves
# a half-written binary that later runs would take as cached.
(cd tests/tools/litestream && go build -trimpath -ldflags "-s -w -X main.Version=$want" -o "$out.tmp" "$mod/cmd/litestream") &
build=$!
# Progress: go build is silent for minutes; say it is still working.
tick=0
while kill -0 "$build" 2>/dev/null; do
	sleep 1
	tick=$((tick + 1))
	if [ $((tick % 15)) -eq 0 ] && kill -0 "$build" 2>/dev/null; then
		echo "    ... still building ($(($(date +%s) - start))s)"
	fi
done
wait "$build"
mv "$out.tmp" "$out"
echo "$want" >"$stamp"
echo "==> built bin/litestream $want in $(($(date +%s) - start))s: $out"
