#!/usr/bin/env bash
# Runs SQLite's own TCL test suite inside a litefs mount and, for comparison,
# in a plain directory, and prints both results per test file.
#
# testfixture is built once from Debian's sqlite3 source package (the SQLite
# version the machine has) and cached in .cache/sqlite-tcl. Run it with
# `make sqlite-tests`; TESTS="wal pager2" limits the run to those files.
# Exit status: non-zero when a test file fails more tests in the mount than
# in the plain directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${LITEFS_BIN:-$ROOT/bin/litefs}"
CACHE="${SQLITE_TCL_CACHE:-$ROOT/.cache/sqlite-tcl}"
# Test files that need no subdirectory (the mount is one flat directory) and
# do not refuse to run as root.
TESTS="${TESTS:-select1 trans trans2 savepoint savepoint2 lock2 lock4 journal1 journal2 journal3 pager2 wal wal3 wal5 walmode walcrash exclusive vacuum incrvacuum incrvacuum3 mmap1}"

# build_testfixture: download the sqlite3 source package and build testfixture.
build_testfixture() {
	export DEBIAN_FRONTEND=noninteractive
	if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
		echo "==> Enabling Debian source packages (deb-src) to fetch SQLite's test suite"
		cat >/etc/apt/sources.list.d/litefs-src.sources <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	fi
	apt-get update -qq
	dpkg -s tcl-dev >/dev/null 2>&1 || apt-get install -y -qq tcl-dev
	mkdir -p "$CACHE"
	(cd "$CACHE" && apt-get source --download-only -qq sqlite3 && tar xf sqlite3_*.orig.tar.xz)
	local src
	src="$(find "$CACHE" -maxdepth 1 -type d -name 'sqlite3-*' | head -1)"
	echo "==> Building testfixture in $src (a few minutes, once)"
	(cd "$src" && ./configure --with-tcl=/usr/lib/tcl8.6 >configure.log 2>&1 && make -j2 testfixture >make.log 2>&1)
	ln -sfn "$src" "$CACHE/src"
}

[[ -x "$BIN" ]] || { echo "error: $BIN not found; run make build" >&2; exit 1; }
[[ -x "$CACHE/src/testfixture" ]] || build_testfixture
TF="$CACHE/src/testfixture"
TDIR="$CACHE/src/test"

WORK="$(mktemp -d /tmp/litefs-tcl.XXXXXX)"
MNT="$WORK/mnt"
PID=""
cleanup() {
	local rc=$?
	set +e
	[[ -n "$PID" ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	if awk -v p="$MNT" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

mkdir -p "$WORK/data" "$MNT" "$WORK/plain"
PORT=$((20000 + RANDOM % 40000))
cat >"$WORK/litefs.yml" <<EOF
data: {dir: "$WORK/data"}
fuse: {dir: "$MNT"}
http: {addr: "127.0.0.1:$PORT"}
lease: {type: static, candidate: true, hostname: primary, advertise-url: "http://127.0.0.1:$PORT"}
EOF
"$BIN" mount -config "$WORK/litefs.yml" >"$WORK/litefs.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do [[ -e "$MNT/.lag" ]] && break; sleep 0.1; done
[[ -e "$MNT/.lag" ]] || { echo "error: litefs did not mount" >&2; cat "$WORK/litefs.log" >&2; exit 1; }

# result DIR TEST: "N/M" failed/total, or "crashed" when no summary printed.
result() {
	local log="$WORK/$2.$(basename "$1").log"
	(cd "$1" && timeout 600 "$TF" "$TDIR/$2.test" --testdir= >"$log" 2>&1) || true
	local line
	line="$(grep -a -E '^[0-9]+ errors out of [0-9]+ tests' "$log" | head -1)"
	if [[ -z "$line" ]]; then
		echo "crashed"
	else
		awk '{print $1 "/" $5}' <<<"$line"
	fi
}

worse=0
printf '%-12s %-14s %-14s\n' "test file" "plain (failed/run)" "litefs mount"
for t in $TESTS; do
	plain="$(result "$WORK/plain" "$t")"
	mount="$(result "$MNT" "$t")"
	printf '%-12s %-14s %-14s\n' "$t" "$plain" "$mount"
	if [[ "$mount" == crashed && "$plain" != crashed ]] || [[ "${mount%%/*}" =~ ^[0-9]+$ && "${plain%%/*}" =~ ^[0-9]+$ && ${mount%%/*} -gt ${plain%%/*} ]]; then
		worse=1
	fi
done
exit "$worse"
