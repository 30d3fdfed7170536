#!/usr/bin/env bash
# Demo: start one litefs primary on loopback, write to a database through the
# mount with the sqlite3 CLI, and show the transaction history litefs keeps.
#
# Run it with `make demo` (which builds bin/litefs and installs fuse3 and
# sqlite3 if they are missing). LITEFS_BIN overrides the binary to run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${LITEFS_BIN:-$ROOT/bin/litefs}"

if [[ ! -x "$BIN" ]]; then
	echo "error: $BIN not found; run 'make demo' (or 'make build') first" >&2
	exit 1
fi
for cmd in fusermount3 sqlite3; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		echo "error: $cmd not found; run 'make deps' (installs fuse3 and sqlite3)" >&2
		exit 1
	fi
done

WORK="$(mktemp -d /tmp/litefs-demo.XXXXXX)"
DATA="$WORK/data"
MNT="$WORK/mnt"
CONFIG="$WORK/litefs.yml"
LOG="$WORK/litefs.log"
PID=""

# is_mounted DIR: true while DIR is a mount point (read from the mount table,
# so a dead FUSE mount does not hang or confuse the check).
is_mounted() {
	awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# cleanup runs on every exit: stop the daemon, remove the mount, delete the
# temp dir; on failure it shows the end of the daemon's log first.
cleanup() {
	local rc=$?
	set +e
	if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
		kill -KILL "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	if is_mounted "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
	fi
	if [[ $rc -ne 0 && -f "$LOG" ]]; then
		echo "--- last lines of the litefs log ($LOG) ---" >&2
		tail -n 40 "$LOG" >&2
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local port
	for _ in $(seq 1 100); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	echo "error: no free port found on 127.0.0.1" >&2
	return 1
}

# sql DB STATEMENTS: run statements with the sqlite3 CLI, stopping at the
# first error and waiting up to 5 s for locks.
sql() {
	sqlite3 -bail -cmd ".timeout 5000" "$1" "$2"
}

PORT="$(free_port)"

echo "==> Creating a work directory $WORK with data/ and mnt/"
mkdir -p "$DATA" "$MNT"

echo "==> Writing $CONFIG (static lease, this node is the primary, HTTP on 127.0.0.1:$PORT)"
cat >"$CONFIG" <<EOF
exit-on-error: false
data:
  dir: "$DATA"
fuse:
  dir: "$MNT"
http:
  addr: "127.0.0.1:$PORT"
lease:
  type: static
  candidate: true
  hostname: primary
  advertise-url: "http://127.0.0.1:$PORT"
EOF
cat "$CONFIG"

echo "==> Starting litefs mount in the background (log: $LOG)"
"$BIN" mount -config "$CONFIG" >"$LOG" 2>&1 &
PID=$!

echo "==> Waiting (up to 15 s) for the mount to come up ($MNT/.lag)"
for _ in $(seq 1 150); do
	[[ -e "$MNT/.lag" ]] && break
	if ! kill -0 "$PID" 2>/dev/null; then
		echo "error: litefs exited before the mount was ready" >&2
		exit 1
	fi
	sleep 0.1
done
if [[ ! -e "$MNT/.lag" ]]; then
	echo "error: $MNT/.lag did not appear within 15 s" >&2
	exit 1
fi
echo "    .lag = $(cat "$MNT/.lag")"

DB="$MNT/demo.db"
echo "==> Creating demo.db in WAL mode with table t (through the mount)"
sql "$DB" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, msg TEXT);"

for msg in "hello" "from" "litefs"; do
	echo "==> Inserting '$msg' in its own transaction"
	sql "$DB" "INSERT INTO t(msg) VALUES ('$msg');"
done

echo "==> Each committed transaction became one LTX file in data/dbs/demo.db/ltx/:"
ls -l "$DATA/dbs/demo.db/ltx/"

echo "==> Position of demo.db on this node (TXID/checksum) from $MNT/demo.db-pos:"
cat "$MNT/demo.db-pos"

echo "==> Reading the rows back:"
sql "$DB" "SELECT id, msg FROM t ORDER BY id;"

echo "==> Stopping litefs with SIGTERM"
kill -TERM "$PID"
for _ in $(seq 1 100); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$PID" 2>/dev/null; then
	echo "error: litefs did not exit within 10 s of SIGTERM" >&2
	exit 1
fi
rc=0
wait "$PID" || rc=$?
PID=""
echo "    litefs exited with status $rc"

echo "==> Checking that the mount is gone"
if is_mounted "$MNT"; then
	echo "error: $MNT is still mounted after litefs exited" >&2
	exit 1
fi
echo "    $MNT is unmounted"

if [[ $rc -ne 0 ]]; then
	echo "error: litefs exited with status $rc" >&2
	exit 1
fi
echo "==> Demo finished"
