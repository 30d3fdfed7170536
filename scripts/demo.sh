#!/usr/bin/env bash
# Demo: start a litefs primary and a replica on loopback, write to a database
# through the primary's mount with the sqlite3 CLI, read it on the replica,
# and write on the replica under the HALT lock (litefs run -with-lock), which
# forwards the transaction to the primary. Then the HTTP proxy: each node runs
# it in front of a tiny web app (cmd/litefs-demoapp, started by the node's
# exec) that uses demo.db through the node's mount; a POST on the replica's
# proxy is forwarded to the primary, and the GET that follows on the replica,
# with the proxy's TXID cookie, sees the new row.
#
# Run it with `make demo` (which builds bin/litefs and bin/litefs-demoapp and
# installs fuse3, sqlite3 and curl if they are missing). LITEFS_BIN and
# LITEFS_DEMOAPP override the binaries to run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${LITEFS_BIN:-$ROOT/bin/litefs}"
APP="${LITEFS_DEMOAPP:-$ROOT/bin/litefs-demoapp}"

for exe in "$BIN" "$APP"; do
	if [[ ! -x "$exe" ]]; then
		echo "error: $exe not found; run 'make demo' (or 'make build') first" >&2
		exit 1
	fi
done
for cmd in fusermount3 sqlite3 curl pkill; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		echo "error: $cmd not found; run 'make deps' (installs fuse3, sqlite3, curl and procps)" >&2
		exit 1
	fi
done

WORK="$(mktemp -d /tmp/litefs-demo.XXXXXX)"
NODES=(primary replica)
declare -A PID MNT LOG

# is_mounted DIR: true while DIR is a mount point (read from the mount table,
# so a dead FUSE mount does not hang or confuse the check).
is_mounted() {
	awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# cleanup runs on every exit: stop the daemons and the apps they started,
# remove the mounts, delete the temp dir; on failure it shows the end of the
# daemons' logs first.
cleanup() {
	local rc=$?
	set +e
	for n in "${NODES[@]}"; do
		if [[ -n "${PID[$n]:-}" ]] && kill -0 "${PID[$n]}" 2>/dev/null; then
			pkill -KILL -P "${PID[$n]}" 2>/dev/null # the app (exec), child of this daemon only
			kill -KILL "${PID[$n]}" 2>/dev/null
			wait "${PID[$n]}" 2>/dev/null
		fi
		if [[ -n "${MNT[$n]:-}" ]] && is_mounted "${MNT[$n]}"; then
			fusermount3 -u "${MNT[$n]}" 2>/dev/null || fusermount3 -uz "${MNT[$n]}"
		fi
		if [[ $rc -ne 0 && -f "${LOG[$n]:-}" ]]; then
			echo "--- last lines of the $n log (${LOG[$n]}) ---" >&2
			tail -n 30 "${LOG[$n]}" >&2
		fi
	done
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

PRIMARY_PORT="$(free_port)"
REPLICA_PORT="$(free_port)"
declare -A PROXY_PORT APP_PORT
for n in "${NODES[@]}"; do
	PROXY_PORT[$n]="$(free_port)"
	APP_PORT[$n]="$(free_port)"
done

# start NODE PORT CANDIDATE: write NODE's litefs.yml and start it. With a
# static lease, hostname and advertise-url name the primary on every node.
# The node's proxy listens on PROXY_PORT[NODE] in front of the demo app, which
# the node starts (exec) on APP_PORT[NODE] once it is ready.
start() {
	local n=$1 port=$2 candidate=$3
	MNT[$n]="$WORK/$n/mnt"
	LOG[$n]="$WORK/$n/litefs.log"
	mkdir -p "$WORK/$n/data" "${MNT[$n]}"
	cat >"$WORK/$n/litefs.yml" <<EOF
exit-on-error: false
data:
  dir: "$WORK/$n/data"
fuse:
  dir: "${MNT[$n]}"
http:
  addr: "127.0.0.1:$port"
lease:
  type: static
  candidate: $candidate
  hostname: primary
  advertise-url: "http://127.0.0.1:$PRIMARY_PORT"
proxy:
  addr: "127.0.0.1:${PROXY_PORT[$n]}"
  target: "127.0.0.1:${APP_PORT[$n]}"
  db: demo.db
exec: "$APP -addr 127.0.0.1:${APP_PORT[$n]} -db ${MNT[$n]}/demo.db -name $n"
EOF
	echo "==> Starting the $n (candidate: $candidate, HTTP on 127.0.0.1:$port, proxy on 127.0.0.1:${PROXY_PORT[$n]}, log ${LOG[$n]})"
	"$BIN" mount -config "$WORK/$n/litefs.yml" >"${LOG[$n]}" 2>&1 &
	PID[$n]=$!
	for _ in $(seq 1 150); do
		[[ -e "${MNT[$n]}/.lag" ]] && return 0
		if ! kill -0 "${PID[$n]}" 2>/dev/null; then
			echo "error: the $n exited before its mount was ready" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "error: ${MNT[$n]}/.lag did not appear within 15 s" >&2
	exit 1
}

# wait_pos DB: wait until the replica's position of DB equals the primary's.
wait_pos() {
	local want
	want="$(cat "${MNT[primary]}/$1-pos")"
	for _ in $(seq 1 100); do
		[[ -e "${MNT[replica]}/$1-pos" && "$(cat "${MNT[replica]}/$1-pos")" == "$want" ]] && return 0
		sleep 0.05
	done
	echo "error: the replica did not reach $want for $1 within 5 s" >&2
	exit 1
}

# wait_health NODE: wait until NODE's proxy answers GET /litefs/health with 200.
wait_health() {
	for _ in $(seq 1 100); do
		curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${PROXY_PORT[$1]}/litefs/health" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "error: the $1's proxy did not answer its health check within 10 s" >&2
	exit 1
}

# stop NODE: SIGTERM, wait, check that the mount is gone.
stop() {
	local n=$1 rc=0
	kill -TERM "${PID[$n]}"
	for _ in $(seq 1 100); do
		kill -0 "${PID[$n]}" 2>/dev/null || break
		sleep 0.1
	done
	wait "${PID[$n]}" || rc=$?
	PID[$n]=""
	if is_mounted "${MNT[$n]}"; then
		echo "error: ${MNT[$n]} is still mounted after the $n exited" >&2
		exit 1
	fi
	echo "    the $n exited with status $rc and its mount is gone"
	[[ $rc -eq 0 ]]
}

start primary "$PRIMARY_PORT" true
start replica "$REPLICA_PORT" false
echo "    replica: .primary = $(cat "${MNT[replica]}/.primary")"

P="${MNT[primary]}/demo.db"
R="${MNT[replica]}/demo.db"
echo "==> On the primary: creating demo.db in WAL mode with table t"
sql "$P" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, msg TEXT);"
for msg in "hello" "from" "the primary"; do
	echo "==> On the primary: inserting '$msg' in its own transaction"
	sql "$P" "INSERT INTO t(msg) VALUES ('$msg');"
done

echo "==> Each committed transaction became one LTX file on the primary:"
ls -l "$WORK/primary/data/dbs/demo.db/ltx/"

wait_pos demo.db
echo "==> Positions (TXID/checksum): primary $(cat "$P-pos"), replica $(cat "$R-pos")"
echo "==> On the replica: reading the rows the primary wrote"
sql "$R" "SELECT id, msg FROM t ORDER BY id;"
echo "==> On the replica: lag behind the primary (ms) = $(cat "${MNT[replica]}/.lag")"

echo "==> On the replica: a write without the HALT lock is refused (WAL mode: 'database is locked'):"
if sqlite3 -bail -cmd ".timeout 200" "$R" "INSERT INTO t(msg) VALUES ('from the replica');" 2>&1; then
	echo "error: the replica accepted a write" >&2
	exit 1
fi

echo "==> On the replica: the same write under the HALT lock, forwarded to the primary:"
echo "    litefs run -with-lock -db demo.db -- sqlite3 $R \"INSERT ...\""
"$BIN" run -url "http://127.0.0.1:$REPLICA_PORT" -with-lock -db demo.db -- \
	sqlite3 -bail -cmd ".timeout 5000" "$R" "INSERT INTO t(msg) VALUES ('from the replica, under the HALT lock');"
wait_pos demo.db
echo "==> On the primary: the row written on the replica is there"
sql "$P" "SELECT id, msg FROM t ORDER BY id;"
echo "==> On the replica: and here (positions: primary $(cat "$P-pos"), replica $(cat "$R-pos"))"
sql "$R" "SELECT id, msg FROM t ORDER BY id;"
echo "==> On the replica: once the lock is released, writes are refused again:"
if sqlite3 -bail -cmd ".timeout 200" "$R" "INSERT INTO t(msg) VALUES ('no lock');" 2>&1; then
	echo "error: the replica accepted a write without the HALT lock" >&2
	exit 1
fi

RP="http://127.0.0.1:${PROXY_PORT[replica]}"
JAR="$WORK/cookies.txt"
MSG="from a POST on the replica's proxy"
wait_health primary
wait_health replica
echo "==> HTTP proxy: each node runs one (proxy.addr) in front of litefs-demoapp, started by the node (exec), using demo.db through its mount"
echo "==> POST on the replica's proxy: a write, so the replica's proxy forwards it to the primary's"
echo "    curl -c cookies -X POST --data \"$MSG\" $RP/messages"
out="$(curl -fsS --max-time 10 -c "$JAR" -X POST --data "$MSG" "$RP/messages")"
echo "    -> $out"
if [[ "$out" != *"on the primary"* ]]; then
	echo "error: the POST on the replica's proxy did not land on the primary" >&2
	exit 1
fi
echo "    cookie from the primary's proxy: $(awk '$6 == "__txid" { print $6 "=" $7 }' "$JAR") (demo.db's TXID after the write)"
echo "==> On the primary: the row is there"
sql "$P" "SELECT id, msg FROM t ORDER BY id DESC LIMIT 1;"
echo "==> GET on the replica's proxy with the cookie: it waits until the replica has that TXID, then the replica's app answers"
echo "    curl -b cookies $RP/messages"
out="$(curl -fsS --max-time 10 -b "$JAR" "$RP/messages")"
sed 's/^/    /' <<<"$out"
if [[ "$out" != *"$MSG"* || "$out" != *"served by the replica"* ]]; then
	echo "error: the replica's answer lacks the row just written" >&2
	exit 1
fi

echo "==> Stopping both nodes with SIGTERM (each stops its app first)"
stop replica
stop primary
echo "==> Demo finished: writes on the primary appeared on the replica; the replica wrote only under the HALT lock, and that write reached the primary; through the proxy, a POST on the replica reached the primary and the replica's next GET saw it"
