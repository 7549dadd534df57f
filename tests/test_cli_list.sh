#!/usr/bin/env bash
#
# locks list and locks check, against a real locksd on a temporary socket
# and, for replies a real daemon seldom gives (holders of an hour ago,
# users with no name, errors such as timeout), against tests/fake_locksd.py.
# TAP, as lib.sh prints it.
#
# usage: test_cli_list.sh LOCKSD LOCKS_CLI

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || usage LOCKSD LOCKS_CLI
LOCKSD=$1
LOCKS=$2
FAKE_LOCKSD=$(dirname "$0")/fake_locksd.py
need_tools python3 flock

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-list.XXXXXX") || exit 1
SOCK=$TMP/locksd.sock
LOCKDIR=$TMP/locks
FAKE_SOCK=$TMP/fake.sock
FAKE_REPLY=$TMP/fake-reply.json
DPID=

trap stop_daemon_and_finish EXIT
trap 'exit 130' INT TERM

# The CLI against the real daemon, and against the fake one.
lk() {
	"$LOCKS" --socket "$SOCK" "$@"
}
fk() {
	"$LOCKS" --socket "$FAKE_SOCK" "$@"
}

# take NAME SECS [run options]: hold NAME through "locks run" in the
# background for SECS seconds; returns once it holds, with its pid in
# HOLD_PID and its fencing token in HOLD_TOKEN.
take() {
	local name=$1 secs=$2 token=$TMP/token.$1.$RANDOM
	shift 2
	"$LOCKS" --socket "$SOCK" run "$@" "$name" -- sh -c \
	    'echo "$LOCKS_TOKEN" >"$0.tmp" && mv "$0.tmp" "$0"; exec sleep "$1"' \
	    "$token" "$secs" >/dev/null 2>&1 &
	HOLD_PID=$!
	wait_until test -s "$token" || fail "could not hold $name"
	HOLD_TOKEN=$(cat "$token")
}

# queue NAME [run options]: a "locks run" waiting for NAME in the
# background, its pid in WAIT_PID; returns once list shows it waiting.
queue() {
	local name=$1
	shift
	"$LOCKS" --socket "$SOCK" run -q "$@" "$name" -- true \
	    >/dev/null 2>&1 &
	WAIT_PID=$!
	wait_until sh -c "'$LOCKS' --socket '$SOCK' list -n -r -o STATE,PID \
	    '$name' | grep -qx 'waiting $WAIT_PID'" || fail "no waiter on $name"
}

# outside NAME SECS: flock(1) holds NAME's lock file for SECS seconds;
# OUT_PID is flock's pid.
outside() {
	local ready=$TMP/ready.$1.$RANDOM
	flock "$LOCKDIR/$1" sh -c 'touch "$0"; exec sleep "$1"' "$ready" "$2" \
	    >/dev/null 2>&1 &
	OUT_PID=$!
	wait_until test -e "$ready" || fail "flock(1) did not start"
}

# fake_list PYTHON: the fake daemon's list reply becomes the JSON of the
# Python expression PYTHON, in which "now" is the current unix time.
fake_list() {
	python3 -c 'import json, sys, time
now = time.time()
json.dump(eval(sys.argv[1]), open(sys.argv[2] + ".tmp", "w"))' \
	    "$1" "$FAKE_REPLY" && mv "$FAKE_REPLY.tmp" "$FAKE_REPLY"
}

# A broker holder as the protocol gives one, for fake_list.
FAKE_HOLDER='{"pid": 4242, "uid": 0, "gid": 0, "client": "c", "owner": "o",
    "mode": "exclusive", "token": 7}'

#
# The tests.
#

test_list_name_shows_an_outside_holder_without_all() {
	local out
	outside ls-out 5 || return 1
	# locksd reads /proc/locks at most every 100 ms: give it time.
	wait_until sh -c "'$LOCKS' --socket '$SOCK' list ls-out | grep -q external" ||
	    fail "list NAME never showed the outside holder: $(lk list ls-out)"
	out=$(lk list -n -r -o NAME,STATE,MODE,PID,OWNER ls-out) ||
	    fail "exit $?"
	[ "$out" = "ls-out external exclusive $OUT_PID flock" ] ||
	    fail "list ls-out: $out"
	out=$(lk list -n -r -o USER ls-out) || fail "exit $?"
	[ "$out" = "$(id -un)" ] || fail "USER of the outside holder: $out"
	# Listing everything still leaves outside-only files to -a.
	lk list | grep -q ls-out && fail "plain list shows it: $(lk list)"
	lk list -a | grep -q ls-out || fail "list -a does not show it"
	return 0
}

test_list_of_a_free_lock_says_free() {
	local out rc
	out=$(lk list ls-free)
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc"
	[ "$out" = "ls-free: free" ] || fail "never taken: $out"
	lk run ls-free -- true || fail "run: exit $?"
	[ "$(lk list ls-free)" = "ls-free: free" ] ||
	    fail "after a release: $(lk list ls-free)"
	# Scripts read -n and -r: no rows is no output.
	out=$(lk list -n ls-free) || fail "-n: exit $?"
	[ -z "$out" ] || fail "-n printed $out"
	out=$(lk list -r ls-free) || fail "-r: exit $?"
	[ -z "$out" ] || fail "-r printed $out"
	take ls-free 5 || return 1
	lk list ls-free | grep -q ': free' &&
	    fail "held, yet: $(lk list ls-free)"
	return 0
}

test_list_json_is_a_bare_array_of_locks() {
	local out
	take ls-json 5 --owner json-owner || return 1
	queue ls-json --owner json-waiter || return 1
	outside ls-json-out 5 || return 1
	wait_until sh -c "'$LOCKS' --socket '$SOCK' list ls-json-out | grep -q external" ||
	    fail "no outside holder"
	out=$(lk list --json) || fail "exit $?"
	echo "$out" | python3 -c '
import json, sys
locks = json.load(sys.stdin)
assert isinstance(locks, list), locks
[lock] = [l for l in locks if l["name"] == "ls-json"]
assert sorted(lock) == ["holders", "name", "waiters"], lock
[h] = lock["holders"]
assert h["owner"] == "json-owner" and h["pid"] == int(sys.argv[1]), h
assert h["token"] == int(sys.argv[2]), h
[w] = lock["waiters"]
assert w["owner"] == "json-waiter" and "token" not in w, w
' "$HOLD_PID" "$HOLD_TOKEN" || fail "list --json: $out"
	out=$(lk list --json ls-json-out) || fail "exit $?"
	echo "$out" | python3 -c '
import json, sys
[lock] = json.load(sys.stdin)
[h] = lock["holders"]
assert h["external"] is True and h["pid"] == int(sys.argv[1]), h
' "$OUT_PID" || fail "list --json NAME, held outside: $out"
	out=$(lk list --json ls-json-free) || fail "exit $?"
	[ "$out" = "[]" ] || fail "a free lock: $out"
	lk list --json -o NAME >/dev/null 2>&1
	[ $? -eq 64 ] || fail "--json with -o is no usage error"
}

test_output_picks_columns_in_order_and_any_case() {
	local out
	take ls-o 5 || return 1
	out=$(lk list -o pid,Name ls-o) || fail "exit $?"
	[ "$(echo "$out" | awk 'NR == 1 { print $1, $2, NF }')" = "PID NAME 2" ] ||
	    fail "header: $out"
	[ "$(echo "$out" | awk 'NR == 2 { print $1, $2, NF }')" = \
	    "$HOLD_PID ls-o 2" ] || fail "row: $out"
	# +COLUMNS adds to the default columns, as lslocks does.
	out=$(lk list -r -o +TOKEN,UID ls-o) || fail "exit $?"
	[ "$(echo "$out" | head -1)" = \
	    "NAME STATE MODE PID USER CLIENT SINCE HELD OWNER TOKEN UID" ] ||
	    fail "+TOKEN,UID header: $out"
	[ "$(echo "$out" | awk 'NR == 2 { print $10, $11 }')" = \
	    "$HOLD_TOKEN $(id -u)" ] || fail "+TOKEN,UID row: $out"
	# Long options and a repeated column.
	out=$(lk list --noheadings --raw --output=name,NAME ls-o) ||
	    fail "exit $?"
	[ "$out" = "ls-o ls-o" ] || fail "--output=name,NAME: $out"
}

test_unknown_column_is_a_usage_error_naming_it() {
	local out rc all long
	out=$(lk list -o NAME,bogus 2>"$TMP/err.col")
	rc=$?
	[ "$rc" -eq 64 ] || fail "exit $rc"
	[ -z "$out" ] || fail "printed $out"
	grep -q 'unknown column "bogus"' "$TMP/err.col" ||
	    fail "not named: $(cat "$TMP/err.col")"
	all=$(sed -n 's/.*the columns are //p' "$TMP/err.col")
	[ "$all" = "NAME,STATE,MODE,PID,USER,CLIENT,SINCE,HELD,OWNER,UID,TOKEN,NODE" ] ||
	    fail "the valid columns: $(cat "$TMP/err.col")"
	# --help lists the same columns (bash completion reads them there).
	[ "$("$LOCKS" --help | awk '/^Columns of list/ { on = 1; next }
	    on && /^$/ { exit } on && /^  [A-Z]/ { printf "%s%s", sep, $1;
	    sep = "," }')" = "$all" ] || fail "--help lists other columns"
	for bad in "" "NAME," ",NAME" "+" "NAME,,PID"; do
		lk list -o "$bad" >/dev/null 2>&1
		[ $? -eq 64 ] || fail "-o '$bad' is no usage error"
	done
	# What the user typed is echoed back only so far.
	long=$(printf 'X%.0s' {1..500})
	lk list -o "$long" 2>"$TMP/err.col"
	[ $? -eq 64 ] || fail "a long column: not 64"
	[ "$(head -1 "$TMP/err.col" | wc -c)" -lt 300 ] ||
	    fail "a long column is echoed whole"
	lk status -o NAME >/dev/null 2>&1
	[ $? -eq 64 ] || fail "status -o is no usage error"
}

test_noheadings_drops_the_header() {
	local out
	take ls-n 5 || return 1
	out=$(lk list ls-n) || fail "exit $?"
	[ "$(echo "$out" | wc -l)" -eq 2 ] || fail "without -n: $out"
	echo "$out" | head -1 | grep -q '^NAME *STATE' || fail "header: $out"
	out=$(lk list -n ls-n) || fail "exit $?"
	[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "-n: $out"
	echo "$out" | grep -q "^ls-n .*$HOLD_PID" || fail "-n row: $out"
}

test_raw_separates_by_one_space_and_escapes_like_lslocks() {
	local out row
	take ls-r 5 --owner 'an owner\with' || return 1
	out=$(lk list -r ls-r) || fail "exit $?"
	[ "$(echo "$out" | head -1)" = \
	    "NAME STATE MODE PID USER CLIENT SINCE HELD OWNER" ] ||
	    fail "header: $out"
	row=$(echo "$out" | sed -n 2p)
	echo "$row" | grep -q '  ' && fail "aligned: $row"
	[ "$(echo "$row" | awk '{ print NF }')" -eq 9 ] || fail "fields: $row"
	[ "$(echo "$row" | awk '{ print $6, $9 }')" = \
	    'locks\x20run an\x20owner\x5cwith' ] || fail "escapes: $row"
	echo "$row" | awk '{ print $7 }' |
	    grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}\\x20[0-9]{2}:[0-9]{2}:[0-9]{2}$' ||
	    fail "SINCE: $row"
	# Without -r, the same cells as they are.
	lk list ls-r | grep -q 'locks run  .*an owner\\with$' ||
	    fail "not raw: $(lk list ls-r)"
}

test_user_shows_the_holders_name() {
	local out
	take ls-user 5 || return 1
	out=$(lk list -n -r -o USER,UID ls-user) || fail "exit $?"
	[ "$out" = "$(id -un) $(id -u)" ] || fail "USER,UID: $out"
	lk list ls-user | awk 'NR == 1 { print $5 }' | grep -qx USER ||
	    fail "no USER in the default columns: $(lk list ls-user)"
}

test_since_is_a_local_date_and_held_a_duration() {
	local since want utc out
	take ls-time 10 || return 1
	queue ls-time || return 1
	since=$(lk list --json ls-time | python3 -c '
import json, sys
print(int(json.load(sys.stdin)[0]["holders"][0]["since"]))') ||
	    fail "no since"
	want=$(TZ=IST-5:30 date -d "@$since" '+%Y-%m-%d %H:%M:%S')
	utc=$(TZ=UTC0 date -d "@$since" '+%Y-%m-%d %H:%M:%S')
	out=$(TZ=IST-5:30 lk list -n -o SINCE ls-time | head -1)
	[ "$out" = "$want" ] || fail "SINCE at UTC+5:30: $out, not $want"
	out=$(TZ=UTC0 lk list -n -o SINCE ls-time | head -1)
	[ "$out" = "$utc" ] || fail "SINCE at UTC: $out, not $utc"
	sleep 1.1
	out=$(lk list -n -r -o STATE,HELD ls-time) || fail "exit $?"
	echo "$out" | grep -qE '^held [1-9][0-9]*s$' || fail "held: $out"
	echo "$out" | grep -qE '^waiting [1-9][0-9]*s$' || fail "waiting: $out"
}

test_held_counts_minutes_hours_and_days() {
	local nobody out
	# A uid with no user name: the first free one from 54321 on.
	for ((nobody = 54321; nobody < 54400; nobody++)); do
		getent passwd "$nobody" >/dev/null || break
	done
	fake_list '{"ok": True, "more": False, "locks": [{"name": "f",
	    "holders": [dict('"$FAKE_HOLDER"', since=now - 65.2)],
	    "waiters": [dict('"$FAKE_HOLDER"', since=now - 3725.2, uid='"$nobody"'),
	                dict('"$FAKE_HOLDER"', since=now - 90061.2)]}]}' ||
	    fail "fake_list"
	out=$(fk list -n -r -o STATE,HELD,USER,UID) || fail "exit $?"
	echo "$out" | sed -n 1p | grep -qE '^held 1m0[5-9]s root 0$' ||
	    fail "a minute: $out"
	echo "$out" | sed -n 2p |
	    grep -qE "^waiting 1h02m0[5-9]s $nobody $nobody\$" ||
	    fail "an hour, a uid with no name: $out"
	echo "$out" | sed -n 3p | grep -qE '^waiting 1d01h01m0[1-5]s root 0$' ||
	    fail "a day: $out"
}

test_labels_are_escaped_for_the_terminal() {
	local out
	fake_list '{"ok": True, "more": False, "locks": [{"name": "f",
	    "holders": [dict('"$FAKE_HOLDER"', since=now, client="a\tb",
	                     owner="\u00e9t\u00e9\x1b[31m")],
	    "waiters": []}]}' || fail "fake_list"
	out=$(fk list -n -o CLIENT,OWNER) || fail "exit $?"
	[ "$out" = 'a\x09b  été\x1b[31m' ] || fail "human: $out"
	out=$(fk list -n -r -o CLIENT,OWNER) || fail "exit $?"
	[ "$out" = 'a\x09b \xc3\xa9t\xc3\xa9\x1b[31m' ] || fail "raw: $out"
}

test_check_statuses() {
	local rc
	lk check ls-chk
	[ $? -eq 0 ] || fail "free: not 0"
	take ls-chk 5 --owner chk-owner || return 1
	lk check ls-chk >"$TMP/out.chk"
	[ $? -eq 1 ] || fail "held: not 1"
	grep ls-chk "$TMP/out.chk" | grep -w "$HOLD_PID" | grep -w "$(id -un)" |
	    grep -q chk-owner || fail "held: no holder row: $(cat "$TMP/out.chk")"
	"$LOCKS" --socket "$TMP/nowhere.sock" check ls-chk 2>/dev/null
	[ $? -eq 69 ] || fail "no daemon: not 69"
	# The daemon's own failures are never 1, which means "held".
	fake_list '{"ok": False, "error": {"code": "timeout",
	    "message": "fake timeout"}}' || fail "fake_list"
	fk check ls-chk 2>"$TMP/err.chk"
	rc=$?
	[ "$rc" -eq 75 ] || fail "daemon timeout: $rc, not 75"
	grep -q 'timeout: fake timeout' "$TMP/err.chk" ||
	    fail "timeout not said: $(cat "$TMP/err.chk")"
	fk list 2>/dev/null
	[ $? -eq 75 ] || fail "list, daemon timeout: not 75"
	fake_list '{"ok": False, "error": {"code": "internal",
	    "message": "fake failure"}}' || fail "fake_list"
	fk check ls-chk 2>/dev/null
	rc=$?
	[ "$rc" -eq 70 ] || fail "daemon error: $rc, not 70"
}

"$LOCKSD" --socket "$SOCK" --lock-dir "$LOCKDIR" 2>"$TMP/locksd.log" &
DPID=$!
wait_until "$LOCKS" --socket "$SOCK" status >/dev/null 2>&1 ||
    bail_no_daemon "$TMP/locksd.log" "locksd did not start"
python3 "$FAKE_LOCKSD" "$FAKE_SOCK" "$FAKE_REPLY" 2>"$TMP/fake.log" &
DPID="$DPID $!"
wait_until test -S "$FAKE_SOCK" ||
    bail_no_daemon "$TMP/fake.log" "fake_locksd.py did not start"

t "list NAME shows a holder outside the broker without -a" \
    test_list_name_shows_an_outside_holder_without_all
t "list NAME of a free lock says NAME: free (not with -n or -r)" \
    test_list_of_a_free_lock_says_free
t "list --json prints a bare array of lock objects" \
    test_list_json_is_a_bare_array_of_locks
t "-o picks columns, in order and in any case; +COLUMNS adds" \
    test_output_picks_columns_in_order_and_any_case
t "-o with an unknown column is a usage error naming it and the columns" \
    test_unknown_column_is_a_usage_error_naming_it
t "-n drops the header" test_noheadings_drops_the_header
t "-r separates cells by one space and escapes as lslocks -r" \
    test_raw_separates_by_one_space_and_escapes_like_lslocks
t "USER shows the holder's user name" test_user_shows_the_holders_name
t "SINCE is a local date, HELD how long held or waited" \
    test_since_is_a_local_date_and_held_a_duration
t "HELD counts minutes, hours and days; USER is a number without a name" \
    test_held_counts_minutes_hours_and_days
t "labels are escaped for the terminal, and for -r as lslocks does" \
    test_labels_are_escaped_for_the_terminal
t "check: 0 free, 1 held, 69 no daemon, 75 daemon timeout, 70 its errors" \
    test_check_statuses
