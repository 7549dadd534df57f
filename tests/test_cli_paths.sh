#!/usr/bin/env bash
#
# Path locks through the locks CLI against a real locksd on a temporary
# socket: a path is FIFO across CLI processes, a plain flock(1) on the file
# is excluded while the broker holds it, a path into the lock dir and its
# name are one queue, and a file the broker cannot lock is refused with
# its reason.  Prints TAP and exits non-zero if any test failed.
#
# usage: test_cli_paths.sh LOCKSD LOCKS_CLI

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || usage LOCKSD LOCKS_CLI
LOCKSD=$1
LOCKS=$2
need_tools flock mkfifo
FLOCK=$(command -v flock)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-paths.XXXXXX") || exit 1
SOCK=$TMP/locksd.sock
LOCKDIR=$TMP/locks
DPID=

trap stop_daemon_and_finish EXIT
trap 'exit 130' INT TERM

lk() {
	"$LOCKS" --socket "$SOCK" "$@"
}

# in_background ARGS...: "locks ARGS" in the background, its own job (not a
# subshell's child, which reap could not end), its output dropped.
in_background() {
	"$LOCKS" --socket "$SOCK" "$@" >/dev/null 2>&1 </dev/null &
}

# waiters TARGET: how many wait for TARGET, from list --json.
waiters() {
	lk list --json "$1" | python3 -c '
import json, sys
locks = json.load(sys.stdin)
print(sum(len(l["waiters"]) for l in locks))'
}

# more_waiters TARGET N: whether more than N wait for TARGET now.
more_waiters() {
	[ "$(waiters "$1")" -gt "$2" ]
}

# queue TARGET TAG: a background "locks run TARGET" that appends TAG to
# $TMP/order once it holds the lock, then returns once it waits.
queue() {
	local before
	before=$(waiters "$1")
	in_background run "$1" -- sh -c 'echo "$0" >>"$1"; sleep 0.2' "$2" "$TMP/order"
	wait_until more_waiters "$1" "$before" ||
	    fail "$2 did not queue for $1"
}

test_path_is_fifo_across_cli_processes() {
	local path=$TMP/fifo.lock ready=$TMP/ready.fifo go=$TMP/go.fifo
	: >"$TMP/order"
	# The first holder lets go once all three wait (or after 20 s).
	in_background run "$path" -- sh -c 'touch "$0"; i=0
	    while [ ! -e "$1" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done' \
	    "$ready" "$go"
	wait_until test -e "$ready" || fail "the first holder did not start"
	queue "$path" A
	queue "$path" B
	queue "$path" C
	touch "$go"
	wait
	[ "$(tr -d '\n' <"$TMP/order")" = ABC ] ||
	    fail "granted out of order: $(tr '\n' ' ' <"$TMP/order")"
}

test_flock_is_excluded_on_a_path_lock() {
	local path=$TMP/excl.lock ready=$TMP/ready.excl
	in_background run "$path" -- sh -c 'touch "$0"; sleep 3' "$ready"
	wait_until test -e "$ready" || fail "the holder did not start"
	"$FLOCK" -n "$path" true && fail "flock -n got a held path lock"
	"$FLOCK" -n -s "$path" true && fail "flock -n -s got it too"
	# flock(1) waiting for it gets it once locks run is done.
	"$FLOCK" -w 10 "$path" true || fail "flock -w did not get it after"
	[ -e "$path" ] || fail "the lock file is gone"
}

test_path_and_name_share_one_queue() {
	local path=$LOCKDIR/shared ready=$TMP/ready.shared out
	in_background run shared -- sh -c 'touch "$0"; sleep 3' "$ready"
	wait_until test -e "$ready" || fail "the name holder did not start"
	lk run -n "$path" -- true && fail "the path ran while the name held"
	out=$(lk list --json "$path")
	echo "$out" | grep -q '"shared"' ||
	    fail "the path's list does not show the name's lock: $out"
	# The waiter by path is granted when the name lets go.
	lk run -w 10 "$path" -- true || fail "the path never got the lock"
}

test_a_file_it_cannot_lock_is_refused_with_why() {
	local fifo=$TMP/a.fifo err rc
	mkfifo "$fifo"
	# The other end is held open, so the client's open goes on.
	exec 8<>"$fifo"
	err=$(lk run "$fifo" -- true 2>&1)
	rc=$?
	exec 8>&-
	[ "$rc" -ne 0 ] || fail "a FIFO was locked"
	echo "$err" | grep -q "FIFO" || fail "no reason given: $err"
	err=$(lk run /nonexistent-dir/x -- true 2>&1) &&
	    fail "a path that cannot be opened was locked"
	echo "$err" | grep -q /nonexistent-dir/x ||
	    fail "the error does not name the path: $err"
}

test_descriptor_converts_its_own_lock_in_place() {
	local f=$TMP/conv.lock
	# Shared, then exclusive on the same descriptor, as flock -s 9; -x 9.
	(
		exec 9>"$f"
		lk run -s 9 || exit 2
		lk run -x 9 || exit 3
		"$FLOCK" -n -s "$f" true && exit 4
		exit 0
	) || fail "shared then exclusive on one descriptor: exit $?"
	"$FLOCK" -n "$f" true || fail "the lock outlived its descriptor"
}

test_an_ignored_sigchld_is_not_inherited() {
	local rc
	timeout 20 python3 -c 'import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])' "$LOCKS" --socket "$SOCK" run \
	    "$TMP/chld.lock" sh -c 'exit 5'
	rc=$?
	[ "$rc" -eq 5 ] || fail "with SIGCHLD ignored: exit $rc, not 5"
}

#

test_hold_holds_a_path() {
	local f=$TMP/hold-path.lock token rc
	coproc HOLDP { lk hold "$f"; }
	read -r -t 10 token <&"${HOLDP[0]}" || fail "no token within 10 s"
	[[ $token =~ ^[0-9]+$ ]] || fail "token: $token"
	"$FLOCK" -n "$f" true && fail "flock -n got $f while hold had it"
	lk check -q "$f"
	[ $? -eq 1 ] || fail "check does not see the path held"
	eval "exec ${HOLDP[1]}>&-"
	wait "$HOLDP_PID"
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc after EOF"
	"$FLOCK" -n "$f" true || fail "still held after EOF"
}

test_dash_c_before_the_path_as_flock() {
	local f=$TMP/dash-c.lock out rc
	mkdir -p "$TMP/bin" && ln -sf "$LOCKS" "$TMP/bin/flock" || fail "ln"
	# flock(1) takes -c only after the file: before it, both refuse.
	"$FLOCK" -c 'echo real' "$f" >/dev/null 2>&1
	rc=$?
	LOCKS_SOCKET=$SOCK "$TMP/bin/flock" -c 'echo ran' "$f" >/dev/null 2>&1
	[ $? -eq "$rc" ] || fail "flock exits $rc for -c before the file"
	out=$(LOCKS_SOCKET=$SOCK "$TMP/bin/flock" "$f" -c \
	    'echo "ran $LOCKS_TOKEN"' 2>&1) || fail "exit $?: $out"
	[[ $out =~ ^ran\ [0-9]+$ ]] || fail "printed: $out"
}

"$LOCKSD" --socket "$SOCK" --lock-dir "$LOCKDIR" 2>"$TMP/locksd.log" &
DPID=$!
wait_until lk status >/dev/null 2>&1 ||
    bail_no_daemon "$TMP/locksd.log" "locksd did not start"

t "a path is FIFO across CLI processes" \
    test_path_is_fifo_across_cli_processes
t "flock(1) is excluded while the broker holds a path" \
    test_flock_is_excluded_on_a_path_lock
t "a path into the lock dir and the name are one queue" \
    test_path_and_name_share_one_queue
t "a file the broker cannot lock is refused, saying why" \
    test_a_file_it_cannot_lock_is_refused_with_why
t "a descriptor converts its own lock in place, as flock(1)" \
    test_descriptor_converts_its_own_lock_in_place
t "an inherited SIG_IGN for SIGCHLD does not hang locks run" \
    test_an_ignored_sigchld_is_not_inherited
t "hold PATH holds the file until stdin closes" test_hold_holds_a_path
t "as flock, -c after the path runs through the broker, before it is 64" \
    test_dash_c_before_the_path_as_flock
