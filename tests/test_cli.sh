#!/usr/bin/env bash
#
# Integration tests of the locks CLI against a real locksd on a temporary
# socket.  Prints one "ok N - ..." or "not ok N - ..." line per test (TAP)
# and exits non-zero if any failed.
#
# usage: test_cli.sh LOCKSD LOCKS_CLI
#
# $LOCKSD_WRAPPER, if set, is a command the daemon runs under (such as
# valgrind); time bounds are stretched tenfold then.

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || usage LOCKSD LOCKS_CLI
LOCKSD=$1
LOCKS=$2
need_tools python3 flock
WRAPPER=${LOCKSD_WRAPPER:-}
SLOW=1
[ -n "$WRAPPER" ] && SLOW=10

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-cli.XXXXXX") || exit 1
SOCK=$TMP/locksd.sock
LOCKDIR=$TMP/locks
DPID=

# Stop the daemon (it must exit 0 and remove its socket) and clean up,
# whatever happened.
teardown() {
	local rc=$? status desc
	trap - EXIT
	if [ -n "$DPID" ]; then
		kill -TERM "$DPID" 2>/dev/null
		wait "$DPID"
		status=$?
		n=$((n + 1))
		desc="SIGTERM: locksd exits 0 and removes its socket"
		if [ "$status" -eq 0 ] && [ ! -e "$SOCK" ]; then
			echo "ok $n - $desc"
		else
			echo "not ok $n - $desc"
			echo "# exit status $status"
			[ -e "$SOCK" ] && echo "# the socket is still there"
			sed 's/^/# locksd: /' "$TMP/locksd.log"
			failed=$((failed + 1))
		fi
	fi
	finish "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# Run the CLI against the test daemon.
lk() {
	"$LOCKS" --socket "$SOCK" "$@"
}

# Retry a command for up to 5 s (stretched under a wrapper): a wall-clock
# deadline, in place of lib.sh's count of tries.
wait_until() {
	local deadline=$(($(ms) + 5000 * SLOW))
	until "$@"; do
		[ "$(ms)" -gt "$deadline" ] && return 1
		sleep 0.02
	done
}

# hold NAME SECS [run options]: hold NAME with "locks run" in the
# background for SECS seconds; returns once it holds.  HOLD_PID is the
# pid of that locks process.
hold() {
	local name=$1 secs=$2 ready
	shift 2
	ready=$TMP/ready.$name.$RANDOM
	"$LOCKS" --socket "$SOCK" run "$@" "$name" -- \
	    sh -c 'touch "$0"; exec sleep "$1"' "$ready" "$secs" \
	    >"$ready.out" 2>&1 &
	HOLD_PID=$!
	wait_until test -e "$ready" || fail "could not hold $name"
}

# Check that stdin is one valid JSON value.
is_json() {
	python3 -c 'import json, sys; json.load(sys.stdin)'
}

start_daemon() {
	# shellcheck disable=SC2086
	$WRAPPER "$LOCKSD" --socket "$SOCK" --lock-dir "$LOCKDIR" \
	    2>"$TMP/locksd.log" &
	DPID=$!
	wait_until "$LOCKS" --socket "$SOCK" status >/dev/null 2>&1 ||
	    bail_no_daemon "$TMP/locksd.log" "locksd did not start"
}

#
# The tests.
#

test_run_gives_the_command_name_and_token() {
	local out rc t1 t2
	out=$(lk run cli-env -- sh -c 'echo $LOCKS_NAME $LOCKS_TOKEN')
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc"
	[[ $out =~ ^cli-env\ [0-9]+$ ]] || fail "printed: $out"
	t1=${out#* }
	t2=$(lk run cli-env -- sh -c 'echo $LOCKS_TOKEN')
	[ "$t2" -gt "$t1" ] || fail "token $t2 after $t1"
}

test_run_propagates_the_command_status() {
	local rc
	lk run cli-status -- sh -c 'exit 7'
	rc=$?
	[ "$rc" -eq 7 ] || fail "exit 7 became $rc"
	lk run cli-status -- sh -c 'kill -TERM $$'
	rc=$?
	[ "$rc" -eq 143 ] || fail "death by SIGTERM became $rc, not 143"
	lk run cli-status -- false
	rc=$?
	[ "$rc" -eq 1 ] || fail "false became $rc"
	# The lock went with the command.
	lk run -n cli-status -- true || fail "lock still held after the command"
}

test_nonblock_on_held_lock_exits_1_without_running() {
	local rc start took
	hold cli-nb 3 || return 1
	start=$(ms)
	lk run -n cli-nb -- touch "$TMP/ran.nb" 2>"$TMP/err.nb"
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 1 ] || fail "exit $rc, not 1"
	[ ! -e "$TMP/ran.nb" ] || fail "the command ran"
	[ "$took" -lt $((2000 * SLOW)) ] || fail "-n waited ${took} ms"
	# As flock(1): a conflict prints nothing, so cron mails nothing.
	[ ! -s "$TMP/err.nb" ] || fail "printed: $(cat "$TMP/err.nb")"
	lk run --verbose -n cli-nb -- true 2>"$TMP/err.nb"
	rc=$?
	[ "$rc" -eq 1 ] || fail "--verbose -n: exit $rc, not 1"
	grep -q 'cli-nb' "$TMP/err.nb" ||
	    fail "--verbose: no message: $(cat "$TMP/err.nb")"
}

test_conflict_exit_code_replaces_1() {
	local rc
	hold cli-e 3 || return 1
	lk run -E 42 -n cli-e -- touch "$TMP/ran.e"
	rc=$?
	[ "$rc" -eq 42 ] || fail "exit $rc, not 42"
	[ ! -e "$TMP/ran.e" ] || fail "the command ran"
	lk run --conflict-exit-code 9 -w 0.1 cli-e -- true
	rc=$?
	[ "$rc" -eq 9 ] || fail "exit $rc after -w, not 9"
}

test_wait_timeout_exits_1_after_the_timeout() {
	local rc start took
	hold cli-w 3 || return 1
	start=$(ms)
	lk run -w 0.3 cli-w -- touch "$TMP/ran.w" 2>/dev/null
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 1 ] || fail "exit $rc, not 1"
	[ ! -e "$TMP/ran.w" ] || fail "the command ran"
	[ "$took" -ge 250 ] || fail "gave up after ${took} ms, before 0.3 s"
	[ "$took" -lt $((3000 * SLOW)) ] || fail "gave up after ${took} ms"
}

test_blocked_run_names_the_holder_then_succeeds() {
	local rc start took
	hold cli-who 1.5 --owner holder-owner || return 1
	start=$(ms)
	lk run --verbose cli-who -- touch "$TMP/ran.who" 2>"$TMP/err.who"
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 0 ] || fail "exit $rc"
	[ -e "$TMP/ran.who" ] || fail "the command did not run"
	[ "$took" -ge 500 ] || fail "did not wait for the holder (${took} ms)"
	grep 'cli-who' "$TMP/err.who" | grep 'holder-owner' |
	    grep -w "$HOLD_PID" | grep -q 'locks run' ||
	    fail "no line naming pid $HOLD_PID, client and owner:" \
	    "$(cat "$TMP/err.who")"
}

test_quiet_says_nothing_while_blocked() {
	local rc
	hold cli-q 1 || return 1
	lk run -q cli-q -- true 2>"$TMP/err.q"
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc"
	[ ! -s "$TMP/err.q" ] || fail "stderr: $(cat "$TMP/err.q")"
	hold cli-q 3 || return 1
	lk run -q -n cli-q -- true 2>"$TMP/err.q"
	rc=$?
	[ "$rc" -eq 1 ] || fail "-q -n exit $rc"
	[ ! -s "$TMP/err.q" ] || fail "stderr: $(cat "$TMP/err.q")"
}

test_notify_after_delays_the_notice() {
	hold cli-na 1.5 || return 1
	lk run --verbose --notify-after 5 cli-na -- true 2>"$TMP/err.na" ||
	    fail "exit $?"
	# --verbose says how long it took, but names no holder.
	! grep -q 'held by' "$TMP/err.na" ||
	    fail "noticed early: $(cat "$TMP/err.na")"
}

test_shared_runs_hold_the_lock_together() {
	local a=$TMP/shared.a b=$TMP/shared.b c=$TMP/shared.c pid rc
	# Each waits for the other to start: both must run at once.  The
	# first holds on until told (c), so the exclusive try below always
	# meets a shared holder.
	lk run -s cli-sh -- sh -c \
	    'touch "$0"; i=0; while [ ! -e "$1" ] && [ $i -lt 100 ]; do
	    sleep 0.05; i=$((i+1)); done; [ -e "$1" ] || exit 1
	    i=0; while [ ! -e "$2" ] && [ $i -lt 100 ]; do
	    sleep 0.05; i=$((i+1)); done' "$a" "$b" "$c" \
	    >/dev/null 2>&1 &
	pid=$!
	wait_until test -e "$a" || fail "first shared run did not start"
	lk run -s -n cli-sh -- sh -c \
	    'touch "$0"; [ -e "$1" ]' "$b" "$a" ||
	    fail "second shared run refused: exit $?"
	lk run -n cli-sh -- true 2>/dev/null &&
	    fail "an exclusive run got in beside a shared one"
	touch "$c"
	wait "$pid" || fail "first shared run failed"
}

# Succeed once "locks list" shows a waiter for NAME.
list_shows_waiter() {
	lk list "$1" | grep -q waiting
}

test_list_shows_holder_and_waiter_rows() {
	local out wpid
	hold cli-list 1.5 --owner list-owner || return 1
	"$LOCKS" --socket "$SOCK" run -q --owner list-waiter cli-list -- true \
	    >/dev/null 2>&1 &
	wpid=$!
	wait_until list_shows_waiter cli-list || fail "no waiter listed"
	out=$(lk list)
	echo "$out" | head -1 | grep -q NAME || fail "no header: $out"
	echo "$out" | grep 'cli-list' | grep -w held | grep -w exclusive |
	    grep -w "$HOLD_PID" | grep -q 'list-owner' ||
	    fail "no holder row: $out"
	echo "$out" | grep 'cli-list' | grep -w waiting | grep -w "$wpid" |
	    grep -q 'list-waiter' || fail "no waiter row: $out"
	out=$(lk list cli-list)
	[ "$(echo "$out" | grep -c cli-list)" -eq 2 ] ||
	    fail "list NAME: $out"
	out=$(lk list cli-nothing-here)
	[ "$out" = "cli-nothing-here: free" ] ||
	    fail "list of a free name printed: $out"
	wait "$wpid" || fail "the waiter failed"
}

test_list_json_is_the_array_of_locks() {
	local out
	hold cli-json 3 --owner json-owner || return 1
	out=$(lk list --json) || fail "exit $?"
	echo "$out" | is_json || fail "not JSON: $out"
	echo "$out" | grep -q '"cli-json"' || fail "name missing: $out"
	out=$(lk list --json cli-json) || fail "exit $?"
	echo "$out" | python3 -c '
import json, sys
[lock] = json.load(sys.stdin)
assert lock["name"] == "cli-json", lock
assert lock["holders"][0]["owner"] == "json-owner", lock
assert lock["waiters"] == [], lock
' || fail "bad reply: $out"
}

test_status_shows_the_counters() {
	local out
	hold cli-status-x 3 || return 1
	out=$(lk status) || fail "exit $?"
	for field in 'version: ' 'uptime: ' 'connections: ' 'locks held: ' \
	    'waiters: ' 'acquired total: '; do
		echo "$out" | grep -q "^$field" || fail "no $field: $out"
	done
	echo "$out" | grep -q "^locks held: [1-9]" || fail "nothing held: $out"
	out=$(lk status --json) || fail "exit $?"
	echo "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["ok"] is True, r
for k in ("connections", "locks_held", "waiters", "acquired_total"):
    assert type(r[k]) is int, (k, r)
assert isinstance(r["uptime"], (int, float)), r
assert isinstance(r["version"], str), r
assert r["locks_held"] >= 1, r
' || fail "bad status: $out"
}

test_socket_option_and_environment_choose_the_daemon() {
	LOCKS_SOCKET=$SOCK "$LOCKS" status >/dev/null ||
	    fail "LOCKS_SOCKET not used"
	LOCKS_SOCKET=$TMP/nowhere.sock "$LOCKS" --socket "$SOCK" status \
	    >/dev/null || fail "--socket does not override LOCKS_SOCKET"
	LOCKS_SOCKET=$TMP/nowhere.sock "$LOCKS" status --socket "$SOCK" \
	    >/dev/null || fail "--socket after the command not taken"
	LOCKS_SOCKET=$SOCK "$LOCKS" run cli-env-sock -- true ||
	    fail "run with LOCKS_SOCKET"
	LOCKS_SOCKET=$TMP/nowhere.sock "$LOCKS" list >/dev/null 2>&1
	[ $? -eq 69 ] || fail "LOCKS_SOCKET to nowhere not used"
}

test_unreachable_daemon_exits_69_with_one_line() {
	local cmd rc nowhere=$TMP/nowhere.sock
	for cmd in "run cli-x -- touch $TMP/ran.69" "list" "status" \
	    "status --json"; do
		# shellcheck disable=SC2086
		"$LOCKS" --socket "$nowhere" $cmd >"$TMP/out.69" 2>"$TMP/err.69"
		rc=$?
		[ "$rc" -eq 69 ] || fail "$cmd: exit $rc, not 69"
		[ "$(wc -l <"$TMP/err.69")" -eq 1 ] ||
		    fail "$cmd: stderr is not one line: $(cat "$TMP/err.69")"
		grep -qF "$nowhere" "$TMP/err.69" ||
		    fail "$cmd: path not named: $(cat "$TMP/err.69")"
		[ ! -s "$TMP/out.69" ] || fail "$cmd: printed to stdout"
	done
	[ ! -e "$TMP/ran.69" ] || fail "the command ran"
}

test_usage_errors_exit_64() {
	local args rc
	while IFS= read -r args; do
		# shellcheck disable=SC2086
		lk $args >/dev/null 2>"$TMP/err.2"
		rc=$?
		[ "$rc" -eq 64 ] || fail "locks $args: exit $rc, not 64"
		[ -s "$TMP/err.2" ] || fail "locks $args: no message"
	done <<EOF
run
run cli-usage
run cli-usage --
run --bogus cli-usage -- touch $TMP/ran.2
run a%b -- touch $TMP/ran.2
run .hidden -- touch $TMP/ran.2
run 9x
run -u cli-usage -- touch $TMP/ran.2
run -u
run --on-lost=term 9
run --on-contended=term 9
run --on-contended=bogus cli-usage -- touch $TMP/ran.2
run -F --on-contended=term cli-usage -- touch $TMP/ran.2
run --cluster --on-contended=ignore cli-usage -- touch $TMP/ran.2
hold --on-contended=term cli-usage
hold -u cli-usage
hold --fallback cli-usage
run -w abc cli-usage -- touch $TMP/ran.2
run -w -1 cli-usage -- touch $TMP/ran.2
run -E 300 -n cli-usage -- touch $TMP/ran.2
frobnicate
list a b
list --bogus
status extra
status --all
EOF
	"$LOCKS" >/dev/null 2>&1
	rc=$?
	[ "$rc" -eq 64 ] || fail "locks with no command: exit $rc"
	# A bad name is a usage error even with no daemon to ask.
	"$LOCKS" --socket "$TMP/nowhere.sock" run a%b -- true 2>/dev/null
	rc=$?
	[ "$rc" -eq 64 ] || fail "a%b with no daemon: exit $rc, not 64"
	[ ! -e "$TMP/ran.2" ] || fail "a command ran"
}

test_flock_cannot_take_a_lock_run_holds() {
	local rc
	hold cli-fl 1 || return 1
	flock -n "$LOCKDIR/cli-fl" true
	rc=$?
	[ "$rc" -eq 1 ] || fail "flock -n got the lock: exit $rc"
	flock -s -n "$LOCKDIR/cli-fl" true && fail "flock -s -n got the lock"
	wait "$HOLD_PID"
	flock -n "$LOCKDIR/cli-fl" true || fail "flock -n failed after release"
	hold cli-fl 1 -s || return 1
	flock -s -n "$LOCKDIR/cli-fl" true || fail "flock -s -n refused"
	flock -x -n "$LOCKDIR/cli-fl" true && fail "flock -x -n got the lock"
	return 0
}

test_run_waits_for_an_outside_flock() {
	local rc start took ready=$TMP/ready.flock
	flock "$LOCKDIR/cli-out" sh -c 'touch "$0"; exec sleep 1' "$ready" \
	    >/dev/null 2>&1 &
	wait_until test -e "$ready" || fail "flock(1) did not start"
	start=$(ms)
	lk run --verbose -w 10 cli-out -- true 2>"$TMP/err.out"
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 0 ] || fail "exit $rc"
	[ "$took" -ge 500 ] || fail "ran while flock(1) held it (${took} ms)"
	[ "$took" -lt $((4000 * SLOW)) ] || fail "waited ${took} ms"
	grep -q 'cli-out' "$TMP/err.out" ||
	    fail "no notice: $(cat "$TMP/err.out")"
}

test_list_all_shows_files_held_only_outside() {
	local out fpid ready=$TMP/ready.all
	flock "$LOCKDIR/cli-all" sh -c 'touch "$0"; exec sleep 3' "$ready" \
	    >/dev/null 2>&1 &
	fpid=$!
	wait_until test -e "$ready" || fail "flock(1) did not start"
	out=$(lk list)
	echo "$out" | grep -q cli-all && fail "plain list shows it: $out"
	out=$(lk list --all) || fail "list --all: exit $?"
	echo "$out" | grep 'cli-all' | grep -w external | grep -q 'flock' ||
	    fail "list --all: no outside holder row: $out"
	out=$(lk list -a --json cli-all) || fail "list -a --json: exit $?"
	echo "$out" | python3 -c '
import json, sys
locks = json.load(sys.stdin)
assert [l["name"] for l in locks] == ["cli-all"], locks
assert locks[0]["holders"][0]["external"] is True, locks' ||
	    fail "list -a --json: $out"
	kill "$fpid" 2>/dev/null
	wait "$fpid" 2>/dev/null
	return 0
}

test_sigterm_reaches_the_command_and_frees_the_lock() {
	local rc
	hold cli-term 10 || return 1
	kill -TERM "$HOLD_PID"
	wait "$HOLD_PID"
	rc=$?
	[ "$rc" -eq 143 ] || fail "exit $rc, not 143"
	lk run -w 2 cli-term -- true || fail "lock not released"
}

#
# The lock follows the command: it inherits the connection, as it would
# inherit flock(1)'s descriptor.
#

# run_until_told NAME GO [run options]: "locks run" NAME in the
# background with a command that writes its pid to GO.ready and runs
# until the file GO exists.  HOLD_PID is the locks process.
run_until_told() {
	local name=$1 go=$2
	shift 2
	"$LOCKS" --socket "$SOCK" run "$@" "$name" -- sh -c \
	    'echo $$ >"$0.ready"; while [ ! -e "$0" ]; do sleep 0.05; done' \
	    "$go" >/dev/null 2>&1 &
	HOLD_PID=$!
	wait_until test -s "$go.ready" || fail "could not hold $name"
}

# The file of a lock target: a path as it is, a name in the lock dir.
lock_file() {
	case $1 in
	*/*) echo "$1" ;;
	*) echo "$LOCKDIR/$1" ;;
	esac
}

# Fail unless both "locks run -n" and "flock -n" are refused the lock
# target $1 (a name or a path); $2 says when.
both_refused() {
	lk run -n "$1" -- true
	[ $? -eq 1 ] || fail "$2: locks run -n got $1"
	flock -n "$(lock_file "$1")" true
	[ $? -eq 1 ] || fail "$2: flock -n got $1"
}

# Whether pid $1 is gone (or a zombie nobody reaped yet).
gone() {
	[ ! -e "/proc/$1" ] || grep -q '^[0-9]* (.*) Z' "/proc/$1/stat"
}

test_kill_9_of_locks_run_leaves_the_lock_with_the_command() {
	local target go cmd
	for target in cli-k9 "$TMP/k9.lock"; do
		go=$TMP/go.k9.${target##*/}
		run_until_told "$target" "$go" || return 1
		cmd=$(cat "$go.ready")
		kill -9 "$HOLD_PID"
		wait "$HOLD_PID" 2>/dev/null
		both_refused "$target" "after kill -9 of locks run"
		touch "$go"
		wait_until gone "$cmd" || fail "the command did not end"
		wait_until lk run -n "$target" -- true ||
		    fail "$target: still held after the command exited"
		flock -n "$(lock_file "$target")" true ||
		    fail "$target: flock -n: still held"
	done
	run_until_told cli-k9 "$TMP/go.k9c" || return 1
	kill -9 "$HOLD_PID"
	lk check -q cli-k9
	[ $? -eq 1 ] || fail "check: free after kill -9 of locks run"
	touch "$TMP/go.k9c"
}

test_close_lets_kill_9_of_locks_run_free_the_lock() {
	local go=$TMP/go.k9o
	run_until_told cli-k9o "$go" -o || return 1
	kill -9 "$HOLD_PID"
	wait "$HOLD_PID" 2>/dev/null
	wait_until lk run -n cli-k9o -- true ||
	    fail "-o: the lock outlived locks run"
	flock -n "$LOCKDIR/cli-k9o" true || fail "-o: flock -n refused"
	touch "$go"
}

test_what_the_command_leaves_running_keeps_the_lock() {
	local go=$TMP/go.bg rc i err=$TMP/err.bg
	# The command leaves a loop running, which keeps what it inherited.
	lk run --verbose cli-bg -- sh -c '(while [ ! -e "$0" ]; do
	    sleep 0.05; done) >/dev/null 2>&1 & exit 3' "$go" 2>"$err"
	rc=$?
	[ "$rc" -eq 3 ] || fail "exit $rc, not the command's 3"
	grep -q 'cli-bg stays held by what the command left running' "$err" ||
	    fail "--verbose did not say so: $(cat "$err")"
	both_refused cli-bg "while what the command left runs"
	touch "$go"
	wait_until lk run -n cli-bg -- true ||
	    fail "still held after the loop ended"
	# Nothing left running: free the moment run returns, never racing.
	for ((i = 0; i < 20; i++)); do
		lk run cli-bg -- true || fail "run $i: exit $?"
		flock -n "$LOCKDIR/cli-bg" true ||
		    fail "run $i: not free as run returned"
	done
	# With -o, what the command leaves running holds nothing.
	rm -f "$go"
	lk run -o cli-bg -- sh -c '(while [ ! -e "$0" ]; do sleep 0.05;
	    done) >/dev/null 2>&1 & exit 0' "$go" || fail "-o: exit $?"
	flock -n "$LOCKDIR/cli-bg" true || fail "-o: still held"
	touch "$go"
}

# Whether pid $1 is stopped.
stopped() {
	grep -q '^[0-9]* (.*) T' "/proc/$1/stat"
}

test_run_returns_only_once_the_lock_is_free() {
	local pid i
	# The command stops the daemon: the release cannot be answered yet.
	"$LOCKS" --socket "$SOCK" run cli-sync -- sh -c 'kill -STOP "$0"' \
	    "$DPID" &
	pid=$!
	wait_until stopped "$DPID" || fail "the daemon did not stop"
	for ((i = 0; i < 50; i++)); do
		gone "$pid" && break
		sleep 0.02
	done
	# Had run returned on a mere close, the stopped daemon would still
	# hold the flock.
	if gone "$pid" && ! flock -n "$LOCKDIR/cli-sync" true; then
		kill -CONT "$DPID"
		fail "run returned before the lock was free"
	fi
	kill -CONT "$DPID"
	wait "$pid" || fail "exit $?"
	flock -n "$LOCKDIR/cli-sync" true || fail "not free once run returned"
}

test_sigterm_during_the_release_keeps_the_commands_status() {
	local pid rc cmdpid=$TMP/pid.sync
	"$LOCKS" --socket "$SOCK" run cli-sync2 -- \
	    sh -c 'echo $$ >"$1"; kill -STOP "$0"; exit 5' "$DPID" "$cmdpid" &
	pid=$!
	wait_until stopped "$DPID" || fail "the daemon did not stop"
	wait_until gone "$(cat "$cmdpid")" || fail "the command did not exit"
	# locks run now waits for the answer to its release.
	kill -TERM "$pid"
	kill -CONT "$DPID"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 5 ] || fail "exit $rc, not the command's 5"
}

test_sigint_ends_locks_run_and_the_command_keeps_the_lock() {
	local go=$TMP/go.int cmd rc sig
	for sig in INT QUIT; do
		rm -f "$go" "$go.ready"
		# A shell's background job ignores SIGINT and SIGQUIT: undo it.
		# No core file from SIGQUIT, either.
		python3 -c 'import os, resource, signal, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
for s in (signal.SIGINT, signal.SIGQUIT):
    signal.signal(s, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$LOCKS" --socket "$SOCK" run \
		    cli-int -- sh -c 'trap "" INT QUIT; echo $$ >"$0.ready"
		    while [ ! -e "$0" ]; do sleep 0.05; done' "$go" \
		    >/dev/null 2>&1 &
		HOLD_PID=$!
		wait_until test -s "$go.ready" || fail "$sig: did not run"
		cmd=$(cat "$go.ready")
		kill -"$sig" "$HOLD_PID"
		wait_until gone "$HOLD_PID" || fail "SIG$sig was swallowed"
		wait "$HOLD_PID"
		rc=$?
		[ "$rc" -eq $((128 + $(kill -l "$sig"))) ] ||
		    fail "SIG$sig: exit $rc"
		gone "$cmd" && fail "SIG$sig: the command ended too"
		both_refused cli-int "after SIG$sig to locks run"
		touch "$go"
		wait_until gone "$cmd" || fail "the command did not end"
		wait_until lk run -n cli-int -- true ||
		    fail "SIG$sig: still held after the command exited"
	done
}

test_lock_files_stay_after_release() {
	lk run cli-file -- true || fail "exit $?"
	[ -f "$LOCKDIR/cli-file" ] || fail "lock file gone"
	[ "$(stat -c %a "$LOCKDIR/cli-file")" = 644 ] ||
	    fail "mode $(stat -c %a "$LOCKDIR/cli-file")"
}

test_on_contended_term_stops_the_command_when_someone_waits() {
	local out=$TMP/out.ct ready=$TMP/ready.ct rc start took wpid
	lk run --on-contended=term cli-cont -- sh -c \
	    'trap "echo got-term; kill \$! 2>/dev/null; exit 0" TERM
	    touch "$0"; sleep 30 & wait' "$ready" >"$out" 2>&1 &
	RUN_PID=$!
	wait_until test -e "$ready" || fail "the command did not run"
	start=$(ms)
	lk run -q cli-cont -- true &
	wpid=$!
	wait "$RUN_PID"
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 0 ] || fail "exit $rc: $(cat "$out")"
	grep -q got-term "$out" || fail "no SIGTERM: $(cat "$out")"
	[ "$took" -lt $((5000 * SLOW)) ] || fail "SIGTERM after $took ms"
	wait "$wpid" || fail "the waiter did not get the lock"
}

test_on_contended_fd_gets_one_line_per_notice() {
	local out=$TMP/out.cf ready=$TMP/ready.cf rc wpid line
	lk run --on-contended=ignore cli-cont-fd -- sh -c \
	    'touch "$0"; read -r word n pid <&"$LOCKS_CONTENDED_FD"
	    echo "$word $n $pid"' "$ready" >"$out" 2>&1 &
	RUN_PID=$!
	wait_until test -e "$ready" || fail "the command did not run"
	# Not through lk: $! must be the waiting locks itself.
	"$LOCKS" --socket "$SOCK" run -q cli-cont-fd -- true &
	wpid=$!
	wait "$RUN_PID"
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc: $(cat "$out")"
	line=$(cat "$out")
	[ "$line" = "contended 1 $wpid" ] ||
	    fail "read: $line, not contended 1 $wpid"
	wait "$wpid" || fail "the waiter did not get the lock"
	line=$(lk run cli-cont-fd -- sh -c 'echo "${LOCKS_CONTENDED_FD-unset}"')
	[ "$line" = unset ] || fail "LOCKS_CONTENDED_FD=$line without the option"
}

start_daemon
t "--on-contended=term: SIGTERM to the command once someone waits" \
    test_on_contended_term_stops_the_command_when_someone_waits
t "--on-contended: LOCKS_CONTENDED_FD reads contended WAITERS PID" \
    test_on_contended_fd_gets_one_line_per_notice
t "run gives the command LOCKS_NAME and a numeric LOCKS_TOKEN" \
    test_run_gives_the_command_name_and_token
t "run exits with the command's status" \
    test_run_propagates_the_command_status
t "-n on a held lock exits 1 without running the command" \
    test_nonblock_on_held_lock_exits_1_without_running
t "-E CODE replaces exit status 1 on conflict" \
    test_conflict_exit_code_replaces_1
t "-w 0.3 on a held lock exits 1 after about 0.3 s" \
    test_wait_timeout_exits_1_after_the_timeout
t "a blocked run names the holder's pid, client and owner, then runs" \
    test_blocked_run_names_the_holder_then_succeeds
t "-q says nothing while blocked or on conflict" \
    test_quiet_says_nothing_while_blocked
t "--notify-after delays the notice past a short wait" \
    test_notify_after_delays_the_notice
t "two -s runs hold the lock together" \
    test_shared_runs_hold_the_lock_together
t "list shows holder and waiter rows" \
    test_list_shows_holder_and_waiter_rows
t "list --json prints the array of locks as valid JSON" \
    test_list_json_is_the_array_of_locks
t "status and status --json show the counters" \
    test_status_shows_the_counters
t "--socket and LOCKS_SOCKET choose the daemon" \
    test_socket_option_and_environment_choose_the_daemon
t "an unreachable daemon: exit 69 and one line naming the socket" \
    test_unreachable_daemon_exits_69_with_one_line
t "usage errors exit 64 (EX_USAGE, as flock(1))" \
    test_usage_errors_exit_64
t "flock(1) cannot take a lock that locks run holds" \
    test_flock_cannot_take_a_lock_run_holds
t "run waits for a lock flock(1) holds outside the broker" \
    test_run_waits_for_an_outside_flock
t "list --all also shows files held only outside the broker" \
    test_list_all_shows_files_held_only_outside
t "SIGTERM to locks run reaches the command and frees the lock" \
    test_sigterm_reaches_the_command_and_frees_the_lock
t "kill -9 of locks run: the command keeps the lock until it exits" \
    test_kill_9_of_locks_run_leaves_the_lock_with_the_command
t "-o: kill -9 of locks run frees the lock at once" \
    test_close_lets_kill_9_of_locks_run_free_the_lock
t "what the command leaves running keeps the lock, as with flock(1)" \
    test_what_the_command_leaves_running_keeps_the_lock
t "run returns only once the lock is free, when nothing kept it" \
    test_run_returns_only_once_the_lock_is_free
t "a SIGTERM during the release leaves run the command's status" \
    test_sigterm_during_the_release_keeps_the_commands_status
t "SIGINT, SIGQUIT end locks run alone; the command keeps the lock" \
    test_sigint_ends_locks_run_and_the_command_keeps_the_lock
t "lock files stay, mode 0644, after release" \
    test_lock_files_stay_after_release

#
# Losing locksd, and its refusals: each test starts a daemon of its own,
# since it kills it or gives it options.
#

# own_daemon TAG [locksd options]: start a daemon for this test alone.
# OWN_SOCK is its socket, OWN_PID its pid, OWN_DIR holds its files and
# OWN_DIR/locksd.log its stderr.  Ready once the CLI gets any answer from
# it, which may be a refusal.
own_daemon() {
	local tag=$1
	shift
	OWN_DIR=$TMP/own.$tag
	OWN_SOCK=$OWN_DIR/locksd.sock
	mkdir -p "$OWN_DIR" || fail "cannot make $OWN_DIR"
	# shellcheck disable=SC2086
	$WRAPPER "$LOCKSD" --socket "$OWN_SOCK" --lock-dir "$OWN_DIR/locks" \
	    "$@" >/dev/null 2>"$OWN_DIR/locksd.log" &
	OWN_PID=$!
	wait_until sh -c '"$0" --socket "$1" status >/dev/null 2>&1; \
	    [ $? -ne 69 ]' "$LOCKS" "$OWN_SOCK" || {
		sed 's/^/locksd: /' "$OWN_DIR/locksd.log"
		fail "locksd $* did not start"
	}
}

# own_run OUT ERR [run arguments]: "locks run" against the test's own
# daemon in the background, bounded by a timeout; RUN_PID is its pid.
own_run() {
	local out=$1 err=$2
	shift 2
	timeout -k 2 $((20 * SLOW)) "$LOCKS" --socket "$OWN_SOCK" run "$@" \
	    >"$out" 2>"$err" &
	RUN_PID=$!
}

# A command for "locks run" that touches $0 once its trap is set, then
# sleeps; on SIGTERM it prints got-term, stops its sleep and exits 0.
NOTES_TERM='trap "echo got-term; kill \$! 2>/dev/null; exit 0" TERM
	touch "$0"; sleep 30 & wait'

# kill -9 the test's own daemon and reap it.
kill_own_daemon() {
	kill -9 "$OWN_PID"
	wait "$OWN_PID" 2>/dev/null
	return 0
}

test_on_lost_term_stops_the_command_and_exits_75() {
	local rc start took out=$TMP/out.lt err=$TMP/err.lt
	local ready=$TMP/ready.lt
	own_daemon lost-term
	# The command notes SIGTERM, and stops its sleep, before it exits.
	own_run "$out" "$err" cli-lost-term -- sh -c "$NOTES_TERM" "$ready"
	wait_until test -e "$ready" || fail "the command did not start"
	kill_own_daemon
	start=$(ms)
	wait "$RUN_PID"
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 75 ] || fail "exit $rc, not 75; stderr: $(cat "$err")"
	[ "$took" -lt $((3000 * SLOW)) ] || fail "took ${took} ms to notice"
	grep -qx got-term "$out" ||
	    fail "the command got no SIGTERM; stdout: $(cat "$out")"
	grep -q cli-lost-term "$err" ||
	    fail "no warning naming the lock: $(cat "$err")"
}

test_on_lost_term_given_explicitly_does_the_same() {
	local rc out=$TMP/out.lt2 err=$TMP/err.lt2 ready=$TMP/ready.lt2
	own_daemon lost-term2
	own_run "$out" "$err" --on-lost=term cli-lost-term2 -- \
	    sh -c "$NOTES_TERM" "$ready"
	wait_until test -e "$ready" || fail "the command did not start"
	kill_own_daemon
	wait "$RUN_PID"
	rc=$?
	[ "$rc" -eq 75 ] || fail "exit $rc, not 75; stderr: $(cat "$err")"
	grep -qx got-term "$out" || fail "the command got no SIGTERM"
	[ -s "$err" ] || fail "no warning"
}

test_on_lost_ignore_warns_and_lets_the_command_finish() {
	local rc took start out=$TMP/out.li err=$TMP/err.li
	local ready=$TMP/ready.li done=$TMP/done.li
	own_daemon lost-ignore
	own_run "$out" "$err" --on-lost=ignore cli-lost-ignore -- \
	    sh -c 'trap "echo got-term" TERM; touch "$0"
		sleep 1.5; touch "$1"; exit 3' "$ready" "$done"
	wait_until test -e "$ready" || fail "the command did not start"
	start=$(ms)
	kill_own_daemon
	wait "$RUN_PID"
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 3 ] ||
	    fail "exit $rc, not the command's 3; stderr: $(cat "$err")"
	[ -e "$done" ] || fail "the command did not run to its end"
	! grep -q got-term "$out" || fail "the command got SIGTERM"
	[ "$took" -ge 700 ] || fail "returned ${took} ms after the loss"
	grep -q cli-lost-ignore "$err" ||
	    fail "no warning naming the lock: $(cat "$err")"
}

test_command_that_exits_around_the_loss_keeps_its_status() {
	local rc out=$TMP/out.le err=$TMP/err.le
	own_daemon lost-exit
	# A normal run against a daemon that is killed afterwards.
	"$LOCKS" --socket "$OWN_SOCK" run cli-lost-exit -- sh -c 'exit 4'
	rc=$?
	[ "$rc" -eq 4 ] || fail "a normal run: exit $rc, not 4"
	# The command kills the daemon, then exits at once: the loss and the
	# exit race, and locks must give the command's status (it had exited)
	# or 75 (it had not), and never hang or report anything else.
	own_run "$out" "$err" cli-lost-exit -- \
	    sh -c 'trap "" TERM; kill -9 "$0"; exit 4' "$OWN_PID"
	wait "$RUN_PID"
	rc=$?
	wait "$OWN_PID" 2>/dev/null
	[ "$rc" -eq 4 ] || [ "$rc" -eq 75 ] ||
	    fail "exit $rc, not 4 or 75; stderr: $(cat "$err")"
	# The command exits first and the daemon dies just after: status 4.
	own_daemon lost-exit2
	own_run "$out" "$err" cli-lost-exit -- \
	    sh -c '(sleep 0.3; kill -9 "$0") >/dev/null 2>&1 & exit 4' \
	    "$OWN_PID"
	wait "$RUN_PID"
	rc=$?
	[ "$rc" -eq 4 ] || fail "exit $rc, not 4; stderr: $(cat "$err")"
	kill_own_daemon
}

test_on_lost_with_a_bad_value_is_a_usage_error() {
	local rc arg
	for arg in --on-lost=bogus "--on-lost bogus" --on-lost=; do
		# shellcheck disable=SC2086
		lk run $arg cli-lost-usage -- touch "$TMP/ran.lu" \
		    >/dev/null 2>"$TMP/err.lu"
		rc=$?
		[ "$rc" -eq 64 ] || fail "run $arg: exit $rc, not 64"
		[ -s "$TMP/err.lu" ] || fail "run $arg: no message"
	done
	[ ! -e "$TMP/ran.lu" ] || fail "the command ran"
}

test_refused_user_exits_77_with_one_line() {
	local cmd rc other=nobody err=$TMP/err.77
	[ "$(id -u)" -eq 0 ] || other=root
	own_daemon refused --allow-user "$other"
	for cmd in "run cli-refused -- touch $TMP/ran.77" "list" "status" \
	    "status --json"; do
		# shellcheck disable=SC2086
		"$LOCKS" --socket "$OWN_SOCK" $cmd >"$TMP/out.77" 2>"$err"
		rc=$?
		[ "$rc" -eq 77 ] || fail "$cmd: exit $rc, not 77"
		[ "$(wc -l <"$err")" -eq 1 ] ||
		    fail "$cmd: stderr is not one line: $(cat "$err")"
		grep -q permission_denied "$err" ||
		    fail "$cmd: no permission_denied: $(cat "$err")"
		[ ! -s "$TMP/out.77" ] || fail "$cmd: printed to stdout"
	done
	[ ! -e "$TMP/ran.77" ] || fail "the command ran"
	grep -q "refused connection from uid $(id -u) pid" \
	    "$OWN_DIR/locksd.log" || fail "refusal not logged"
}

test_detect_deadlock_nested_run_fails_at_once_naming_the_ancestor() {
	local err=$TMP/err.dl rc pid start took
	start=$(ms)
	"$LOCKS" --socket "$SOCK" run cli-dl -- \
	    "$LOCKS" --socket "$SOCK" run --detect-deadlock -w 60 cli-dl -- \
	    touch "$TMP/ran.dl" 2>"$err" &
	pid=$!
	wait "$pid"
	rc=$?
	took=$(($(ms) - start))
	[ "$rc" -eq 1 ] || fail "exit $rc, not 1: $(cat "$err")"
	[ "$took" -lt $((5000 * SLOW)) ] || fail "it waited ${took} ms"
	[ ! -e "$TMP/ran.dl" ] || fail "the inner command ran"
	grep -q "deadlock: cli-dl is held by pid $pid, an ancestor of this" \
	    "$err" || fail "pid $pid not named: $(cat "$err")"
	# -E sets the status, and -q does not hide the deadlock.
	"$LOCKS" --socket "$SOCK" run cli-dl -- \
	    "$LOCKS" --socket "$SOCK" run -q -E 7 --detect-deadlock -w 60 \
	    cli-dl -- true 2>"$err"
	rc=$?
	[ "$rc" -eq 7 ] || fail "-E 7: exit $rc: $(cat "$err")"
	grep -q "deadlock: cli-dl" "$err" || fail "-q: $(cat "$err")"
	# A holder that is no ancestor is waited for, as ever.
	hold cli-dl 5 || return 1
	lk run --detect-deadlock -w 0.3 cli-dl -- true 2>"$err"
	rc=$?
	[ "$rc" -eq 1 ] || fail "no ancestor: exit $rc"
	grep -q deadlock "$err" && fail "not a deadlock: $(cat "$err")"
	# The descriptor form and cluster locks cannot ask.
	lk run --detect-deadlock 9 9</dev/null 2>"$err"
	rc=$?
	[ "$rc" -eq 64 ] || fail "descriptor form: exit $rc"
	grep -q "detect-deadlock" "$err" || fail "no reason: $(cat "$err")"
	lk run --detect-deadlock --cluster cli-dl -- true 2>"$err"
	rc=$?
	[ "$rc" -eq 64 ] || fail "--cluster: exit $rc"
	return 0
}

test_client_past_max_clients_exits_75() {
	local rc err=$TMP/err.mc ready=$TMP/ready.mc
	own_daemon max-clients --max-clients 1
	own_run /dev/null /dev/null cli-max -- \
	    sh -c 'touch "$0"; exec sleep 10' "$ready"
	wait_until test -e "$ready" || fail "the first client did not run"
	"$LOCKS" --socket "$OWN_SOCK" status >/dev/null 2>"$err"
	rc=$?
	[ "$rc" -eq 75 ] || fail "exit $rc, not 75: $(cat "$err")"
	grep -q limit "$err" || fail "no limit: $(cat "$err")"
	kill -TERM "$RUN_PID"
	wait "$RUN_PID"
	wait_until "$LOCKS" --socket "$OWN_SOCK" status >/dev/null 2>&1 ||
	    fail "no room after the first client left"
}

t "--on-lost=term: when locksd dies, SIGTERM to the command, exit 75" \
    test_on_lost_term_stops_the_command_and_exits_75
t "--on-lost=term can be given explicitly" \
    test_on_lost_term_given_explicitly_does_the_same
t "--on-lost=ignore: warns and exits with the command's own status" \
    test_on_lost_ignore_warns_and_lets_the_command_finish
t "a command that exits around the loss keeps its status" \
    test_command_that_exits_around_the_loss_keeps_its_status
t "--on-lost with a bad value is a usage error" \
    test_on_lost_with_a_bad_value_is_a_usage_error
t "a user locksd does not allow: exit 77 and one line" \
    test_refused_user_exits_77_with_one_line
t "past --max-clients: exit 75 until a client leaves" \
    test_client_past_max_clients_exits_75
t "--detect-deadlock: a nested run fails at once, naming the ancestor" \
    test_detect_deadlock_nested_run_fails_at_once_naming_the_ancestor
