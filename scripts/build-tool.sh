#!/usr/bin/env bash
# Builds a server the tests run from its Go module, pinned in its own tools
# module under tests/tools/, into bin/, unless the pinned version is already
# there. The first build takes a few minutes on 2 cores; later runs return
# at once (FORCE=1 rebuilds).
#
#   scripts/build-tool.sh versitygw   S3-compatible server for the backup tests
#                                     (posix backend: a bucket is a directory)
#   scripts/build-tool.sh litestream  Litestream v0.5, for `litestream restore`
#                                     of a bucket litefs wrote
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

name=${1:?usage: scripts/build-tool.sh versitygw|litestream}
case "$name" in
versitygw) dir=tests/tools/s3 mod=github.com/versity/versitygw ldflags="-s -w" ;;
litestream) dir=tests/tools/litestream mod=github.com/benbjohnson/litestream ldflags="-s -w -X main.Version=VERSION" ;;
*)
	echo "error: unknown tool $name (versitygw or litestream)" >&2
	exit 2
	;;
esac
out="$PWD/bin/$name"
stamp="$out.version"
want=$(awk -v m="$mod" '$1 == "require" && $2 == m { print $3 } $1 == m { print $2 }' "$dir/go.mod" | head -n 1)
if [ -z "$want" ]; then
	echo "error: $dir/go.mod does not require $mod" >&2
	exit 1
fi
ldflags=${ldflags//VERSION/$want}

if [ -x "$out" ] && [ -z "${FORCE:-}" ]; then
	have=$(cat "$stamp" 2>/dev/null || true)
	if [ "$have" = "$want" ]; then
		echo "==> bin/$name $have is present (cached); FORCE=1 rebuilds it"
		exit 0
	fi
	echo "==> bin/$name is ${have:-of unknown version}, $dir/go.mod pins $want: rebuilding"
fi

echo "==> building bin/$name $want from $dir (go build $mod/cmd/$name; a few minutes the first time)"
mkdir -p bin
start=$(date +%s)
# Build to a temporary name and rename, so an interrupted build never leaves
# a half-written binary that later runs would take as cached.
(cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$mod/cmd/$name") &
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
echo "==> built bin/$name $want in $(($(date +%s) - start))s: $out"
