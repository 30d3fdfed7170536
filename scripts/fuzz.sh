#!/usr/bin/env bash
# Runs every Go native fuzz target (func FuzzXxx in a _test.go file) of the
# module for FUZZTIME each, one after another, and fails on the first
# target that finds a failing input (written to the package's
# testdata/fuzz/FuzzXxx/ by go test; commit it as a regression seed once
# fixed).
#
#   FUZZTIME          how long each target runs (default 60s; "3s", "10m", "5000x")
#   FUZZ              only targets whose name matches this regex (default all)
#   FUZZMINIMIZETIME  time or count spent minimizing each new input (default
#                     20x: go's default of 60s stalls the slower targets)
#
# Targets are found with `go test -list '^Fuzz'`, in the packages whose test
# files declare one (so that no other test binary is built for nothing).
set -euo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
FUZZ=${FUZZ:-.}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-20x}
cd "$(dirname "$0")/.."

# "go test -list" prints a package's matching names, then its "ok" line.
mapfile -t dirs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u)
if [ "${#dirs[@]}" -eq 0 ]; then
	echo "no fuzz targets found" >&2
	exit 1
fi
mapfile -t targets < <($GO test -list '^Fuzz' "${dirs[@]}" | awk '
	/^Fuzz/ { names[n++] = $1; next }
	/^ok/   { for (i = 0; i < n; i++) print $2, names[i]; n = 0 }')

log=$(mktemp)
trap 'rm -f "$log"' EXIT
ran=0
for entry in "${targets[@]}"; do
	pkg=${entry% *} name=${entry#* }
	[[ $name =~ $FUZZ ]] || continue
	printf '==> fuzz %-24s %s for %s: ' "$name" "$pkg" "$FUZZTIME"
	if ! $GO test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" \
		-fuzzminimizetime="$FUZZMINIMIZETIME" "$pkg" >"$log" 2>&1; then
		echo FAIL
		cat "$log"
		exit 1
	fi
	# From the last progress line: elapsed time, execs, and their average rate.
	grep '^fuzz: elapsed' "$log" | tail -1 | awk '{
		d = $3; sub(/,$/, "", d); secs = 0
		if (match(d, /[0-9.]+h/)) secs += substr(d, RSTART, RLENGTH - 1) * 3600
		if (match(d, /[0-9.]+m/)) secs += substr(d, RSTART, RLENGTH - 1) * 60
		if (match(d, /[0-9.]+s/)) secs += substr(d, RSTART, RLENGTH - 1)
		if ($4 != "execs:") { sub(/^fuzz: /, ""); print; next }
		execs = $5 + 0; rate = secs > 0 ? execs / secs : 0
		printf "%s execs in %s (%.0f/s), %s %s %s %s %s\n", execs, d, rate, $7, $8, $9, $10, $11 }'
	ran=$((ran + 1))
done
if [ "$ran" -eq 0 ]; then
	echo "no fuzz target matches FUZZ=$FUZZ" >&2
	exit 1
fi
echo "==> fuzz: $ran targets passed"
