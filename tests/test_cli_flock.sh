#!/usr/bin/env bash
#
# The flock(1) command line of "locks run", side by side with the real
# flock(1), and the check and hold commands, against a real locksd on a
# temporary socket.  Prints TAP and exits non-zero if any test failed.
#
# usage: test_cli_flock.sh LOCKSD LOCKS_CLI

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || usage LOCKSD LOCKS_CLI
LOCKSD=$1
LOCKS=$2
need_tools flock script timeout
FLOCK=$(command -v flock)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-flock.XXXXXX") || exit 1
SOCK=$TMP/locksd.sock
LOCKDIR=$TMP/locks
DPID=

trap stop_daemon_and_finish EXIT
trap 'exit 130' INT TERM

lk() {
	"$LOCKS" --socket "$SOCK" "$@"
}

# hold NAME SECS [run options]: hold NAME with "locks run" in the
# background for SECS seconds; returns once it holds.  The daemon holds
# the real flock on $LOCKDIR/NAME, so flock(1) meets the same holder.
hold() {
	local name=$1 secs=$2 ready
	shift 2
	ready=$TMP/ready.$name.$RANDOM
	"$LOCKS" --socket "$SOCK" run "$@" "$name" -- \
	    sh -c 'touch "$0"; exec sleep "$1"' "$ready" "$secs" \
	    >/dev/null 2>&1 &
	HOLD_PID=$!
	wait_until test -e "$ready" || fail "could not hold $name"
}

# both EXPECT NAME ARGS...: run "flock ARGS" and "locks run ARGS" with
# NAME put in front (for flock, its lock file), and fail unless both exit
# EXPECT.  OPTS are the options before NAME.  Stderr of each is kept in
# $TMP/err.flock and $TMP/err.locks, stdout in $TMP/out.*.
both() {
	local expect=$1 name=$2 frc lrc
	shift 2
	# shellcheck disable=SC2086
	timeout 20 "$FLOCK" $OPTS "$LOCKDIR/$name" "$@" \
	    >"$TMP/out.flock" 2>"$TMP/err.flock" </dev/null
	frc=$?
	# shellcheck disable=SC2086
	timeout 20 "$LOCKS" --socket "$SOCK" run $OPTS "$name" "$@" \
	    >"$TMP/out.locks" 2>"$TMP/err.locks" </dev/null
	lrc=$?
	[ "$frc" -eq "$lrc" ] ||
	    fail "$OPTS $name $*: flock exits $frc, locks $lrc:" \
	    "$(cat "$TMP/err.locks")"
	[ "$lrc" -eq "$expect" ] ||
	    fail "$OPTS $name $*: both exit $lrc, not $expect"
}

start_daemon() {
	"$LOCKSD" --socket "$SOCK" --lock-dir "$LOCKDIR" \
	    2>"$TMP/locksd.log" &
	DPID=$!
	wait_until "$LOCKS" --socket "$SOCK" status >/dev/null 2>&1 ||
	    bail_no_daemon "$TMP/locksd.log" "locksd did not start"
	# flock(1) creates the file itself; make them for both sides.
	lk run fl-nb -- true && lk run fl-w -- true && lk run fl-e -- true &&
	    lk run fl-c -- true && lk run fl-sx -- true &&
	    lk run fl-F -- true && lk run fl-o -- true ||
	    bail_no_daemon "$TMP/locksd.log" "cannot make the lock files"
}

#
# flock(1)'s options, side by side.
#

test_nonblock_conflict_exits_1_silently_like_flock() {
	local opt
	hold fl-nb 5 || return 1
	for opt in -n --nb --nonblock --nonblocking "-w 0" "--timeout 0"; do
		OPTS=$opt both 1 fl-nb touch "$TMP/ran.nb"
		# Nothing printed, so cron sends no mail.
		[ ! -s "$TMP/err.locks" ] ||
		    fail "$opt printed: $(cat "$TMP/err.locks")"
		[ ! -s "$TMP/err.flock" ] || fail "flock $opt printed"
	done
	[ ! -e "$TMP/ran.nb" ] || fail "a command ran"
}

test_wait_timeout_exits_1_like_flock() {
	local opt start took
	hold fl-w 5 || return 1
	for opt in "-w 0.3" "--wait 0.3" "--timeout 0.3"; do
		start=$(ms)
		OPTS=$opt both 1 fl-w touch "$TMP/ran.w"
		took=$(($(ms) - start))
		# Both waited about 0.3 s, one after the other.
		[ "$took" -ge 500 ] || fail "$opt: gave up in ${took} ms"
		[ "$took" -lt 4000 ] || fail "$opt: took ${took} ms"
		[ ! -s "$TMP/err.locks" ] ||
		    fail "$opt printed: $(cat "$TMP/err.locks")"
	done
	[ ! -e "$TMP/ran.w" ] || fail "a command ran"
}

test_conflict_exit_code_like_flock() {
	hold fl-e 5 || return 1
	OPTS="-E 42 -n" both 42 fl-e true
	OPTS="--conflict-exit-code 7 -w 0.2" both 7 fl-e true
	OPTS="-E 0 -n" both 0 fl-e touch "$TMP/ran.e"
	[ ! -e "$TMP/ran.e" ] || fail "the command ran with -E 0"
	OPTS="-E 256 -n" both 64 fl-e true
}

test_dash_c_runs_through_the_shell_like_flock() {
	OPTS= both 5 fl-c -c 'echo "a  b"; exit 5'
	[ "$(cat "$TMP/out.locks")" = "a  b" ] ||
	    fail "locks -c printed: $(cat "$TMP/out.locks")"
	cmp -s "$TMP/out.flock" "$TMP/out.locks" || fail "outputs differ"
	OPTS= both 0 fl-c --command 'test -n "$LOCKS_TOKEN" || [ -z "$1" ]'
	OPTS= both 64 fl-c -c 'true' extra
	OPTS= both 64 fl-c -c
	# -c before the name is not flock's either (without --fd).
	OPTS="-c true" both 64 fl-c
	# $SHELL runs the command, as flock(1) does.
	SHELL=$TMP/no-such-shell lk run fl-c -c true 2>/dev/null
	[ $? -eq 127 ] || fail "\$SHELL not used"
	SHELL= lk run fl-c -c 'exit 3'
	[ $? -eq 3 ] || fail "empty \$SHELL: no /bin/sh"
}

test_shared_and_exclusive_like_flock() {
	hold fl-sx 5 -s || return 1
	OPTS="-s -n" both 0 fl-sx true
	OPTS="--shared -n" both 0 fl-sx true
	OPTS="-x -n" both 1 fl-sx true
	OPTS="-e -n" both 1 fl-sx true
	OPTS="--exclusive -n" both 1 fl-sx true
	OPTS="-n" both 1 fl-sx true
	kill -TERM "$HOLD_PID"
	wait "$HOLD_PID"
	hold fl-sx 5 -x || return 1
	OPTS="-s -n" both 1 fl-sx true
}

test_no_fork_execs_the_command_holding_the_lock() {
	local pidfile=$TMP/pid.F ready=$TMP/ready.F pid rc
	OPTS=-F both 4 fl-F sh -c 'exit 4'
	OPTS=--no-fork both 0 fl-F -c 'exit 0'
	OPTS="-F -o" both 64 fl-F true
	lk run -F --on-lost=term fl-F -- true 2>/dev/null
	[ $? -eq 64 ] || fail "-F --on-lost is no usage error"
	# The command is locks itself, exec'd, and holds the lock alone.
	"$LOCKS" --socket "$SOCK" run -F fl-F sh -c 'echo $$ >"$0"; touch "$1"; exec sleep 60' \
	    "$pidfile" "$ready" &
	pid=$!
	wait_until test -e "$ready" || fail "-F did not run"
	[ "$(cat "$pidfile")" = "$pid" ] ||
	    fail "-F forked: command $(cat "$pidfile"), locks $pid"
	OPTS=-n both 1 fl-F true
	lk check -q fl-F
	[ $? -eq 1 ] || fail "check: fl-F free under -F"
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 143 ] || fail "-F: exit $rc, not 128+SIGTERM"
	# It ended with the command.
	OPTS=-n both 0 fl-F true
}

test_close_leaves_the_lock_out_of_the_command_like_flock() {
	local n count='ls -l /proc/$$/fd | grep -c socket'
	OPTS=-o both 6 fl-o sh -c 'exit 6'
	OPTS=--close both 0 fl-o true
	# The command inherits no descriptor of the lock, so something it
	# leaves behind does not hold the lock.
	n=$(lk run -o fl-o sh -c "$count")
	[ "$n" -eq "$(sh -c "$count")" ] ||
	    fail "-o: the command has $n sockets"
	OPTS=-o both 0 fl-o sh -c 'sleep 3 >/dev/null 2>&1 </dev/null &'
	OPTS=-n both 0 fl-o true
}

test_help_version_and_bad_options_like_flock() {
	OPTS=-h both 0 fl-o
	OPTS=--help both 0 fl-o
	OPTS=-V both 0 fl-o
	OPTS=--version both 0 fl-o
	OPTS=--bogus both 64 fl-o true
	OPTS=-w both 64 fl-o
	OPTS="-w abc" both 64 fl-o true
	OPTS= both 64 fl-o
}

#
# What locks says.
#

test_verbose_says_how_long_or_why() {
	local err=$TMP/err.v
	lk run --verbose fl-v -- true 2>"$err" || fail "exit $?"
	grep -q 'getting fl-v took [0-9.]* seconds' "$err" ||
	    fail "no time: $(cat "$err")"
	hold fl-v 5 || return 1
	lk run --verbose -n fl-v -- true 2>"$err"
	[ $? -eq 1 ] || fail "--verbose -n: exit not 1"
	grep -q 'fl-v is held; failed' "$err" || fail "-n: $(cat "$err")"
	lk run --verbose -w 0.2 fl-v -- true 2>"$err"
	[ $? -eq 1 ] || fail "--verbose -w: exit not 1"
	grep -q 'fl-v is held; timed out after 0\.[0-9]* seconds' "$err" ||
	    fail "-w: $(cat "$err")"
	grep -q "held by pid $HOLD_PID" "$err" ||
	    fail "-w: no notice: $(cat "$err")"
	lk run -q --verbose fl-v -- true 2>/dev/null
	[ $? -eq 64 ] || fail "-q --verbose is no usage error"
}

test_notice_only_on_a_terminal_or_verbose() {
	local out
	hold fl-tty 5 || return 1
	lk run -w 0.3 fl-tty -- true 2>"$TMP/err.tty"
	[ ! -s "$TMP/err.tty" ] ||
	    fail "notice off a terminal: $(cat "$TMP/err.tty")"
	# script(1) gives stderr a terminal.
	out=$(script -qec "'$LOCKS' --socket '$SOCK' run -w 0.3 fl-tty true" \
	    /dev/null </dev/null)
	echo "$out" | grep -q "held by pid $HOLD_PID" ||
	    fail "no notice on a terminal: $out"
	out=$(script -qec "'$LOCKS' --socket '$SOCK' run -q -w 0.3 fl-tty \
	    true" /dev/null </dev/null)
	[ -z "$out" ] || fail "-q on a terminal: $out"
}

test_nested_lock_names_the_ancestor() {
	local err=$TMP/err.nest rc pid
	"$LOCKS" --socket "$SOCK" run fl-nest -- \
	    "$LOCKS" --socket "$SOCK" run -w 1 fl-nest -- \
	    touch "$TMP/ran.nest" 2>"$err" &
	pid=$!
	wait "$pid"
	rc=$?
	[ "$rc" -eq 1 ] || fail "exit $rc, not 1"
	[ ! -e "$TMP/ran.nest" ] || fail "the inner command ran"
	grep -q "fl-nest is held by pid $pid, an ancestor of this process" \
	    "$err" || fail "pid $pid not named as ancestor: $(cat "$err")"
	# A holder that is no ancestor is not called one.
	hold fl-nest 5 || return 1
	lk run --verbose -w 0.2 fl-nest -- true 2>"$err"
	grep -q ancestor "$err" && fail "not an ancestor: $(cat "$err")"
	return 0
}

#
# check and hold.
#

# Succeed once "locks check" says NAME is held.
check_is_held() {
	lk check -q "$1"
	[ $? -eq 1 ]
}

test_check_says_free_or_held() {
	local out rc ready=$TMP/ready.chk
	out=$(lk check fl-chk)
	rc=$?
	[ "$rc" -eq 0 ] || fail "free: exit $rc"
	[ -z "$out" ] || fail "free: printed $out"
	hold fl-chk 5 --owner chk-owner || return 1
	out=$(lk check fl-chk)
	rc=$?
	[ "$rc" -eq 1 ] || fail "held: exit $rc"
	echo "$out" | grep fl-chk | grep -w "$HOLD_PID" | grep -q chk-owner ||
	    fail "held: no holder row: $out"
	out=$(lk check -q fl-chk)
	rc=$?
	[ "$rc" -eq 1 ] || fail "-q: exit $rc"
	[ -z "$out" ] || fail "-q printed $out"
	# A holder outside the broker counts too.
	"$FLOCK" "$LOCKDIR/fl-chk-out" sh -c 'touch "$0"; exec sleep 5' \
	    "$ready" >/dev/null 2>&1 &
	wait_until test -e "$ready" || fail "flock(1) did not start"
	# locksd reads /proc/locks at most every 100 ms: give it time.
	wait_until check_is_held fl-chk-out || fail "outside holder: free"
	out=$(lk check fl-chk-out)
	[ $? -eq 1 ] || fail "outside holder: not held: $out"
	echo "$out" | grep -q external || fail "outside holder: $out"
	"$LOCKS" --socket "$TMP/nowhere.sock" check fl-chk 2>/dev/null
	[ $? -eq 69 ] || fail "no daemon: not 69"
	lk check 2>/dev/null
	[ $? -eq 64 ] || fail "no name: not 64"
	lk check .hidden 2>/dev/null
	[ $? -eq 64 ] || fail "bad name: not 64"
	# A path is checked by its file; one that is not there is free.
	lk check "$TMP/no-such-file" || fail "missing path: not free"
	out=$(lk check "$LOCKDIR/fl-chk")
	[ $? -eq 1 ] || fail "held by path: not held: $out"
}

test_hold_holds_until_stdin_closes() {
	local token rc i
	coproc HOLD { lk hold --owner coproc-owner fl-hold; }
	read -r -t 10 token <&"${HOLD[0]}" || fail "no token within 10 s"
	[[ $token =~ ^[0-9]+$ ]] || fail "token: $token"
	lk check -q fl-hold
	[ $? -eq 1 ] || fail "not held after the token"
	lk list fl-hold | grep -q coproc-owner || fail "owner not listed"
	eval "exec ${HOLD[1]}>&-"
	wait "$HOLD_PID"
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc after EOF"
	lk check -q fl-hold || fail "still held after EOF"
	# stdin at its end already: granted, then let go.
	out=$(lk hold fl-hold </dev/null) || fail "</dev/null: exit $?"
	[[ $out =~ ^[0-9]+$ ]] || fail "</dev/null printed $out"
	[ "$out" -gt "$token" ] || fail "token $out after $token"
	# So with -n, which never waits.
	for ((i = 0; i < 10; i++)); do
		out=$(lk hold -n fl-hold </dev/null) || fail "-n: exit $?"
		[[ $out =~ ^[0-9]+$ ]] || fail "-n </dev/null printed $out"
	done
}

test_hold_ends_on_sigterm_and_on_conflict() {
	local pid rc out=$TMP/out.hold fifo=$TMP/fifo.hold
	# Read and write: stdin never reaches its end.
	mkfifo "$fifo" || fail "mkfifo"
	"$LOCKS" --socket "$SOCK" hold fl-hold-t <>"$fifo" >"$out" &
	pid=$!
	wait_until test -s "$out" || fail "no token"
	lk run -n fl-hold-t -- true
	[ $? -eq 1 ] || fail "not held"
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc after SIGTERM"
	lk check -q fl-hold-t || fail "still held after SIGTERM: $(lk check fl-hold-t)"
	hold fl-hold-t 5 || return 1
	out=$(lk hold -n fl-hold-t </dev/null)
	rc=$?
	[ "$rc" -eq 1 ] || fail "-n: exit $rc"
	[ -z "$out" ] || fail "-n printed a token: $out"
	lk hold -E 3 -w 0.2 fl-hold-t </dev/null >/dev/null
	[ $? -eq 3 ] || fail "-E 3 -w 0.2: not 3"
	lk hold -F fl-hold-t </dev/null 2>/dev/null
	[ $? -eq 64 ] || fail "hold -F is no usage error"
	lk hold fl-hold-t true </dev/null 2>/dev/null
	[ $? -eq 64 ] || fail "hold with a command is no usage error"
}

# Succeed once "locks list" shows a waiter for NAME.
has_waiter() {
	lk list "$1" | grep -qw waiting
}

# Succeed once it shows none.
no_waiter() {
	! has_waiter "$1"
}

test_hold_gives_up_a_wait_when_stdin_ends_or_on_sigterm() {
	local rc pid fifo=$TMP/fifo.hold-w out=$TMP/out.hold-w
	hold fl-hold-w 60 || return 1
	coproc WAITER { lk hold fl-hold-w; }
	wait_until has_waiter fl-hold-w || fail "hold is not waiting"
	eval "exec ${WAITER[1]}>&-"
	wait "$WAITER_PID"
	rc=$?
	[ "$rc" -eq 1 ] || fail "stdin's end while waiting: exit $rc, not 1"
	wait_until no_waiter fl-hold-w || fail "the wait was not cancelled"
	coproc WAITER { lk hold -E 7 fl-hold-w; }
	wait_until has_waiter fl-hold-w || fail "-E 7: hold is not waiting"
	eval "exec ${WAITER[1]}>&-"
	wait "$WAITER_PID"
	rc=$?
	[ "$rc" -eq 7 ] || fail "-E 7: exit $rc, not 7"
	# SIGTERM while waiting: 143, no token, the wait cancelled.
	mkfifo "$fifo" || fail "mkfifo"
	"$LOCKS" --socket "$SOCK" hold fl-hold-w <>"$fifo" >"$out" &
	pid=$!
	wait_until has_waiter fl-hold-w || fail "SIGTERM: hold is not waiting"
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 143 ] || fail "SIGTERM while waiting: exit $rc, not 143"
	[ ! -s "$out" ] || fail "SIGTERM while waiting printed $(cat "$out")"
	wait_until no_waiter fl-hold-w || fail "SIGTERM: the wait was not cancelled"
}

start_daemon
t "-n, --nb, -w 0: exit 1 on conflict and print nothing, as flock(1)" \
    test_nonblock_conflict_exits_1_silently_like_flock
t "-w, --wait, --timeout: exit 1 after the wait, as flock(1)" \
    test_wait_timeout_exits_1_like_flock
t "-E sets the conflict status, as flock(1)" \
    test_conflict_exit_code_like_flock
t "-c runs one command through the shell, as flock(1)" \
    test_dash_c_runs_through_the_shell_like_flock
t "-s shares and -x, -e exclude, as flock(1)" \
    test_shared_and_exclusive_like_flock
t "-F execs the command, which holds the lock while it runs" \
    test_no_fork_execs_the_command_holding_the_lock
t "-o: the command does not inherit the lock, as flock(1)" \
    test_close_leaves_the_lock_out_of_the_command_like_flock
t "-h, -V and bad options exit as flock(1)" \
    test_help_version_and_bad_options_like_flock
t "--verbose says how long getting the lock took, or why it failed" \
    test_verbose_says_how_long_or_why
t "the blocking notice shows only on a terminal or with --verbose" \
    test_notice_only_on_a_terminal_or_verbose
t "a lock nested in itself names the holder as the waiter's ancestor" \
    test_nested_lock_names_the_ancestor
t "check exits 0 if free, 1 if held (printing holders unless -q), 69" \
    test_check_says_free_or_held
t "hold prints the token and holds until stdin closes" \
    test_hold_holds_until_stdin_closes
t "hold ends on SIGTERM, and exits like run on a conflict" \
    test_hold_ends_on_sigterm_and_on_conflict
t "hold gives up a wait when stdin ends (exit 1 or -E) or on SIGTERM (143)" \
    test_hold_gives_up_a_wait_when_stdin_ends_or_on_sigterm
