#!/usr/bin/env bash
# Builds the S3-compatible server the backup tests run (bin/versitygw, the
# versitygw gateway whose posix backend stores a bucket as a directory) from
# the Go module github.com/versity/versitygw, pinned in tests/tools/s3/go.mod,
# unless the pinned version is already there. The first build takes a few
# minutes on 2 cores; later runs return at once.
#
#   scripts/build-s3.sh          build bin/versitygw if missing
#   FORCE=1 scripts/build-s3.sh  rebuild it
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

mod=github.com/versity/versitygw
out="$PWD/bin/versitygw"
stamp="$out.version"
want=$(awk -v m="$mod" '$1 == "require" && $2 == m { print $3 } $1 == m { print $2 }' tests/tools/s3/go.mod | head -n 1)
if [ -z "$want" ]; then
	echo "error: tests/tools/s3/go.mod does not require $mod" >&2
	exit 1
fi

if [ -x "$out" ] && [ -z "${FORCE:-}" ]; then
	have=$(cat "$stamp" 2>/dev/null || true)
	if [ "$have" = "$want" ]; then
		echo "==> bin/versitygw $have is present (cached); FORCE=1 rebuilds it"
		exit 0
	fi
	echo "==> bin/versitygw is ${have:-of unknown version}, tests/tools/s3/go.mod pins $want: rebuilding"
fi

echo "==> building bin/versitygw $want from tests/tools/s3 (go build $mod/cmd/versitygw; a few minutes the first time)"
mkdir -p bin
start=$(date +%s)
# Build to a temporary name and rename, so an interrupted build never leaves
# a half-written binary that later runs would take as cached.
(cd tests/tools/s3 && go build -trimpath -ldflags "-s -w" -o "$out.tmp" "$mod/cmd/versitygw") &
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
echo "==> built bin/versitygw $want in $(($(date +%s) - start))s: $out"
