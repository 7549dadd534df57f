#!/usr/bin/env bash
#
# locks metrics and locksd --metrics-file against promtool (Debian's
# prometheus package), the check an operator's Prometheus applies, after
# grants, waits, timeouts and cancellations have moved the counters; the
# OpenMetrics text against prometheus_client's strict parser, where it is
# installed.  Skipped (77) without promtool.  TAP, as lib.sh prints it.
#
# usage: test_metrics.sh LOCKSD LOCKS_CLI

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || usage LOCKSD LOCKS_CLI
LOCKSD=$1
LOCKS=$2
need_tools python3

if ! command -v promtool >/dev/null; then
	echo "1..0 # SKIP promtool is missing (apt-get install prometheus)"
	exit 77
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-metrics.XXXXXX") || exit 1
SOCK=$TMP/locksd.sock
PROM=$TMP/textfile/locksd.prom
DPID=

trap stop_daemon_and_finish EXIT
trap 'exit 130' INT TERM

lk() {
	"$LOCKS" --socket "$SOCK" "$@"
}

held() {
	! lk check -q "$1"
}

# Move every kind of counter: grants of both modes, a wait, timeouts.
busy() {
	lk run mt-a -- sleep 1 &
	wait_until held mt-a || return 1
	lk run -w 0.2 mt-a -- true 2>/dev/null && return 1
	lk run -n mt-a -- true 2>/dev/null && return 1
	lk run -s mt-b -- true || return 1
	lk run -w 5 mt-a -- true || return 1
	wait
}

test_locks_metrics_passes_promtool() {
	local out
	busy || fail "could not make the daemon busy"
	lk metrics >"$TMP/m.txt" || fail "locks metrics failed"
	grep -qx 'locksd_timeouts_total{scope="local"} 2' "$TMP/m.txt" ||
	    fail "no two timeouts: $(grep timeouts "$TMP/m.txt")"
	grep -qx 'locksd_grants_total{scope="local",mode="shared"} 1' \
	    "$TMP/m.txt" || fail "no shared grant"
	grep -q '^locksd_wait_seconds_bucket{scope="local",le="+Inf"} ' \
	    "$TMP/m.txt" || fail "no wait histogram"
	[ "$(tail -n 1 "$TMP/m.txt")" = "# EOF" ] || fail "no # EOF at the end"
	out=$(promtool check metrics <"$TMP/m.txt" 2>&1) ||
	    fail "promtool: $out"
	[ -z "$out" ] || fail "promtool has remarks: $out"
}

test_metrics_file_passes_promtool() {
	local out
	wait_until grep -q '^locksd_grants_total{scope="local",mode="shared"} 1$' \
	    "$PROM" || fail "the file does not show the grants: $(cat "$PROM")"
	out=$(promtool check metrics <"$PROM" 2>&1) || fail "promtool: $out"
	[ -z "$out" ] || fail "promtool has remarks: $out"
}

test_openmetrics_parses_strictly() {
	lk metrics --openmetrics >"$TMP/om.txt" || fail "--openmetrics failed"
	grep -qx '# TYPE locksd_grants counter' "$TMP/om.txt" ||
	    fail "OpenMetrics names the counter family without _total"
	if ! python3 -c 'import prometheus_client' 2>/dev/null; then
		echo "# prometheus_client missing: the strict parse is skipped"
		return 0
	fi
	python3 - "$TMP/om.txt" <<-'EOF' || fail "the OpenMetrics parser refused it"
	import sys
	from prometheus_client.openmetrics.parser import (
	    text_string_to_metric_families)
	with open(sys.argv[1]) as f:
	    families = list(text_string_to_metric_families(f.read()))
	names = {f.name for f in families}
	assert 'locksd_grants' in names and 'locksd_wait_seconds' in names, names
	EOF
}

test_json_is_the_metrics_object() {
	lk metrics --json | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert m["grants_total"]["local"]["exclusive"] >= 2, m
assert m["connections"] >= 1, m
' || fail "--json is not the metrics object"
	lk metrics --json --openmetrics 2>/dev/null
	[ $? -eq 64 ] || fail "--json with --openmetrics is not a usage error"
}

mkdir "$TMP/textfile"
"$LOCKSD" --socket "$SOCK" --lock-dir "$TMP/locks" --metrics-file "$PROM" \
    --metrics-interval 1 2>"$TMP/locksd.log" &
DPID=$!
wait_until lk status >/dev/null 2>&1 ||
    bail_no_daemon "$TMP/locksd.log" "locksd did not start"

t "locks metrics passes promtool check metrics, the counters moved" \
    test_locks_metrics_passes_promtool
t "--metrics-file passes promtool check metrics" \
    test_metrics_file_passes_promtool
t "--openmetrics is OpenMetrics 1.0, as prometheus_client parses it" \
    test_openmetrics_parses_strictly
t "--json prints the metrics object" test_json_is_the_metrics_object
