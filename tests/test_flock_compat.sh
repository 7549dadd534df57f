#!/usr/bin/env bash
#
# util-linux's own flock(1) scenarios (tests/ts/flock/ there: non-block,
# no-fork, shared, exclusive, the descriptor form, timeout, close and
# unlock), written again here, and run three ways: against the real
# flock(1), against locks invoked as flock (a symlink in a temporary
# directory) with a real locksd on a temporary socket, and against the
# same symlink with no daemon at all (its plain flock(2) fallback).  Each
# scenario prints its exit statuses; all three must print the statuses
# util-linux expects.  Then the fallback's own promises.  TAP, as lib.sh
# prints it.
#
# usage: test_flock_compat.sh LOCKSD LOCKS_CLI

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || usage LOCKSD LOCKS_CLI
LOCKSD=$1
LOCKS=$2
need_tools flock
REAL_FLOCK=$(command -v flock)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-compat.XXXXXX") || exit 1
SOCK=$TMP/locksd.sock
NOWHERE=$TMP/nowhere/locksd.sock
DPID=

trap stop_daemon_and_finish EXIT
trap 'exit 130' INT TERM

# locks as flock: a symlink named flock, as the README says to install.
mkdir "$TMP/bin" "$TMP/nowhere" "$TMP/nowhere/locks" || exit 1
ln -s "$(cd "$(dirname "$LOCKS")" && pwd)/$(basename "$LOCKS")" \
    "$TMP/bin/flock" || exit 1
AS_FLOCK=$TMP/bin/flock

# The three ways, by name: the command, and the socket it looks at.
impl_cmd() {
	case $1 in
	real) echo "$REAL_FLOCK" ;;
	*) echo "$AS_FLOCK" ;;
	esac
}

impl_socket() {
	case $1 in
	broker) echo "$SOCK" ;;
	*) echo "$NOWHERE" ;;
	esac
}

# hold_shared F FILE GO: "F --shared FILE" in the background, as util-linux
# holds its "general lock", with a command that runs until GO exists.
hold_shared() {
	"$1" --shared "$2" sh -c 'touch "$0.ready"
	    while [ ! -e "$0" ]; do sleep 0.05; done' "$3" >/dev/null 2>&1 &
	wait_until test -e "$3.ready"
}

#
# The scenarios.  Each takes the flock command to test, works in the
# current directory (its own per way) and prints its exit statuses.
#

# Under a shared lock: non-block, no-fork, shared and exclusive.
scenario_under_a_shared_lock() {
	local F=$1 out=
	hold_shared "$F" lockfile go || { echo "no-holder"; return; }
	"$F" --nonblocking --conflict-exit-code 123 lockfile echo never
	out+="non-block:$? "
	"$F" --no-fork --nonblocking --conflict-exit-code 123 lockfile \
	    echo never
	out+="no-fork:$? "
	"$F" --shared lockfile echo "have shared lock" >/dev/null
	out+="shared:$? "
	"$F" --nb --exclusive --conflict-exit-code 123 lockfile echo never
	out+="exclusive:$? "
	touch go
	wait
	echo "$out"
}

# The descriptor form: fd 4 open on a file someone holds shared.
scenario_descriptor_form() {
	local F=$1 out=
	hold_shared "$F" lockfile go || { echo "no-holder"; return; }
	exec 4<>lockfile
	"$F" --nonblocking --exclusive --conflict-exit-code 123 4
	out+="fd:$? "
	[ -e 4 ] && out+="made-a-file-named-4 "
	touch go
	wait
	"$F" --nonblocking --exclusive 4
	out+="fd-free:$? "
	# Locking a description that holds the lock again is no conflict.
	"$F" --nonblocking --exclusive 4
	out+="fd-again:$? "
	exec 4>&-
	"$F" -n 99
	out+="bad-fd:$? "
	echo "$out"
}

# The two idioms of the issue: a subshell's fd 9, and exec 9 ... -u 9.
scenario_descriptor_idioms() {
	local F=$1 out=
	out+=$( ("$F" -n 9 || exit 1; "$F" -n lockfile true; echo "inner:$?"
	    ) 9>lockfile)" "
	"$F" -n lockfile true
	out+="after-subshell:$? "
	exec 9>lockfile
	"$F" -x 9
	out+="x9:$? "
	"$F" -n lockfile true
	out+="held:$? "
	"$F" -u 9
	out+="u9:$? "
	"$F" -n lockfile true
	out+="after-u:$? "
	exec 9>&-
	echo "$out"
}

# Timeout: a wait that the holder's end lets in, and one that runs out.
scenario_timeout() {
	local F=$1 out= pid
	hold_shared "$F" lockfile go || { echo "no-holder"; return; }
	"$F" --timeout 30 --conflict-exit-code 5 lockfile echo after \
	    >/dev/null &
	pid=$!
	"$F" --timeout 0.5 --conflict-exit-code 5 lockfile true
	out+="ran-out:$? "
	"$F" --wait 0 --conflict-exit-code 5 lockfile true
	out+="wait-0:$? "
	touch go
	wait "$pid"
	out+="let-in:$? "
	wait
	echo "$out"
}

# Close: with -o the command (and what it leaves running) holds nothing.
scenario_close() {
	local F=$1 out=
	"$F" --exclusive --close lockfile -c "'$F' --exclusive --nonblock \
	    lockfile true"
	out+="close-inner:$? "
	"$F" --close lockfile sh -c '(while [ ! -e "$0" ]; do sleep 0.05
	    done) >/dev/null 2>&1 &' go-o
	"$F" -n lockfile true
	out+="close-left-nothing:$? "
	touch go-o
	"$F" lockfile sh -c '(while [ ! -e "$0" ]; do sleep 0.05
	    done) >/dev/null 2>&1 &' go
	"$F" -n lockfile true
	out+="left-running-holds:$? "
	touch go
	wait_until "$F" -n lockfile true
	out+="then-free:$? "
	"$F" -F -o lockfile true 2>/dev/null
	out+="F-and-o:$? "
	echo "$out"
}

# Unlock, as util-linux's unlock test: lock fd 10, -u it, -w 0 the file.
scenario_unlock() {
	local F=$1 out=
	exec 10<>lockfile
	"$F" --exclusive --nonblock --verbose 10 >/dev/null 2>&1
	out+="lock:$? "
	"$F" --wait 0 lockfile true
	out+="held:$? "
	"$F" --unlock 10
	out+="unlock:$? "
	"$F" --exclusive --wait 0 --verbose lockfile true >/dev/null 2>&1
	out+="after:$? "
	exec 10>&-
	echo "$out"
}

# Exit statuses of the command line itself.
scenario_statuses() {
	local F=$1 out=
	"$F" lockfile sh -c 'exit 7'
	out+="status:$? "
	"$F" lockfile sh -c 'kill -TERM $$'
	out+="signal:$? "
	"$F" lockfile /nonexistent/command 2>/dev/null
	out+="no-command:$? "
	"$F" 2>/dev/null
	out+="no-args:$? "
	"$F" lockfile 2>/dev/null
	out+="file-alone:$? "
	"$F" --bogus lockfile true 2>/dev/null
	out+="bad-option:$? "
	"$F" -E 300 lockfile true 2>/dev/null
	out+="bad-E:$? "
	"$F" "$PWD/no/such/dir/lockfile" true 2>/dev/null
	out+="no-dir:$? "
	"$F" . true
	out+="directory:$? "
	"$F" -h >/dev/null
	out+="help:$? "
	"$F" -V >/dev/null
	out+="version:$? "
	echo "$out"
}

# compare SCENARIO EXPECTED: run the scenario each way, each in a fresh
# directory, and fail unless every way prints EXPECTED.
compare() {
	local scenario=$1 expect=$2 way dir got bad=0
	for way in real broker none; do
		dir=$TMP/$scenario.$way
		mkdir "$dir" || fail "mkdir $dir"
		# exec 2>, not "$scenario" 2>: a redirection on a function
		# call saves fd 2 at fd 10, the very descriptor the unlock
		# scenario opens, when fd 10 was not inherited open (as in CI).
		got=$(cd "$dir" && exec 2>"$dir.err" &&
		    LOCKS_SOCKET=$(impl_socket "$way") \
		    "$scenario" "$(impl_cmd "$way")")
		[ "$got" = "$expect" ] && continue
		echo "# $way: $got; want $expect; stderr: $(head -c 300 \
		    "$dir.err")"
		bad=1
	done
	[ "$bad" -eq 0 ] || fail "the ways differ"
}

test_non_block_no_fork_shared_exclusive() {
	compare scenario_under_a_shared_lock \
	    "non-block:123 no-fork:123 shared:0 exclusive:123 "
}

test_descriptor_form() {
	compare scenario_descriptor_form \
	    "fd:123 fd-free:0 fd-again:0 bad-fd:65 "
}

test_descriptor_idioms() {
	compare scenario_descriptor_idioms \
	    "inner:1 after-subshell:0 x9:0 held:1 u9:0 after-u:0 "
}

test_timeout() {
	compare scenario_timeout "ran-out:5 wait-0:5 let-in:0 "
}

test_close() {
	compare scenario_close "close-inner:1 close-left-nothing:0 \
left-running-holds:1 then-free:0 F-and-o:64 "
}

test_unlock() {
	compare scenario_unlock "lock:0 held:1 unlock:0 after:0 "
}

test_exit_statuses() {
	compare scenario_statuses "status:7 signal:143 no-command:69 \
no-args:64 file-alone:64 bad-option:64 bad-E:64 no-dir:66 directory:0 \
help:0 version:0 "
}

#
# Through the broker when one answers; the fallback's promises when not.
#

test_as_flock_goes_through_the_broker() {
	local go=$TMP/go.broker err=$TMP/err.broker out
	LOCKS_SOCKET=$SOCK "$AS_FLOCK" --verbose "$TMP/broker.lock" sh -c \
	    'echo "${LOCKS_TOKEN:-none}" >"$0.token"
	    while [ ! -e "$0" ]; do sleep 0.05; done' "$go" 2>"$err" &
	wait_until test -s "$go.token" || fail "did not run: $(cat "$err")"
	[[ $(cat "$go.token") =~ ^[0-9]+$ ]] ||
	    fail "LOCKS_TOKEN: $(cat "$go.token")"
	out=$("$LOCKS" --socket "$SOCK" list)
	echo "$out" | grep -q "broker.lock" || fail "not listed: $out"
	grep -q "falling back" "$err" && fail "fell back: $(cat "$err")"
	touch "$go"
	wait
}

# verbose_run IMPL ARGS...: stdout and stderr of IMPL --verbose, timings
# masked, as "out:" and "err:" lines.
verbose_run() {
	local impl=$1 cmd
	shift
	cmd=$(impl_cmd "$impl")
	LOCKS_SOCKET=$(impl_socket "$impl") "$cmd" --verbose "$@" \
	    >"$TMP/v.out" 2>"$TMP/v.err" </dev/null
	sed 's/^/out: /' "$TMP/v.out"
	sed 's/^/err: /' "$TMP/v.err"
}

# flock(1)'s --verbose words, on its streams: util-linux's unlock test
# compares them.
test_verbose_says_what_flock_says() {
	local f=$TMP/verbose.lock go=$TMP/go.verbose want got
	# Sorted: flock(1) leaves its lines in stdout's buffer past the
	# command's own when stdout is a file; locks flushes them first.
	want=$(verbose_run real "$f" echo hi |
	    sed 's/[0-9.]* seconds/N seconds/' | sort)
	got=$(verbose_run broker "$f" echo hi |
	    sed 's/[0-9.]* seconds/N seconds/' | sort)
	[ "$got" = "$want" ] || fail "granted: flock says [$want], locks [$got]"
	"$REAL_FLOCK" "$f" sh -c 'while [ ! -e "$0" ]; do sleep 0.05; done' \
	    "$go" &
	wait_until sh -c '! "$0" -n "$1" true' "$REAL_FLOCK" "$f" ||
	    fail "the holder did not take $f"
	want=$(verbose_run real -n "$f" true)
	got=$(verbose_run broker -n "$f" true)
	[ "$got" = "$want" ] || fail "-n: flock says [$want], locks [$got]"
	want=$(verbose_run real -w 0.2 "$f" true | tail -n 1)
	got=$(verbose_run broker -w 0.2 "$f" true | tail -n 1)
	[ "$got" = "$want" ] || fail "-w: flock ends [$want], locks [$got]"
	touch "$go"
	wait
}

test_fallback_is_silent_unless_verbose() {
	local err=$TMP/err.fb
	LOCKS_SOCKET=$NOWHERE "$AS_FLOCK" "$TMP/fb.lock" true 2>"$err" ||
	    fail "exit $?"
	[ ! -s "$err" ] || fail "said: $(cat "$err")"
	LOCKS_SOCKET=$NOWHERE "$AS_FLOCK" --verbose "$TMP/fb.lock" true \
	    2>"$err" || fail "--verbose: exit $?"
	grep -q "falling back to a plain flock(2) on $TMP/fb.lock" "$err" ||
	    fail "--verbose did not say: $(cat "$err")"
	grep -q "$NOWHERE" "$err" || fail "no socket named: $(cat "$err")"
}

test_run_falls_back_only_with_fallback() {
	local rc out ready=$TMP/ready.fbr
	"$LOCKS" --socket "$NOWHERE" run fb-name -- true 2>/dev/null
	rc=$?
	[ "$rc" -eq 69 ] || fail "no daemon, no --fallback: exit $rc, not 69"
	out=$("$LOCKS" --socket "$NOWHERE" run --fallback fb-name -- \
	    sh -c 'echo "$LOCKS_NAME"') || fail "--fallback: exit $?"
	[ "$out" = fb-name ] || fail "LOCKS_NAME: $out"
	# A name falls back to locks/NAME beside the socket: flock(1) there
	# excludes it.
	"$REAL_FLOCK" "$TMP/nowhere/locks/fb-name" sh -c 'touch "$0"
	    exec sleep 30' "$ready" &
	wait_until test -e "$ready" || fail "flock(1) did not start"
	"$LOCKS" --socket "$NOWHERE" run --fallback -n fb-name -- true
	rc=$?
	[ "$rc" -eq 1 ] || fail "--fallback -n on a held file: exit $rc"
	"$LOCKS" --socket "$NOWHERE" run --fallback -n "$TMP/fb-path" -- true ||
	    fail "--fallback with a path: exit $?"
}

test_no_broker_token_means_no_locks_token() {
	local out
	out=$(LOCKS_TOKEN=12345 LOCKS_SOCKET=$NOWHERE "$AS_FLOCK" \
	    "$TMP/tok.lock" sh -c 'echo "${LOCKS_TOKEN-unset}"')
	[ "$out" = unset ] || fail "as flock: LOCKS_TOKEN=$out"
	out=$(LOCKS_TOKEN=12345 "$LOCKS" --socket "$NOWHERE" run --fallback \
	    tok-name -- sh -c 'echo "${LOCKS_TOKEN-unset}"')
	[ "$out" = unset ] || fail "run --fallback: LOCKS_TOKEN=$out"
	out=$(LOCKS_TOKEN=12345 "$LOCKS" --socket "$SOCK" run tok-name -- \
	    sh -c 'echo "${LOCKS_TOKEN-unset}"')
	[[ $out =~ ^[0-9]+$ ]] && [ "$out" != 12345 ] ||
	    fail "with a broker: LOCKS_TOKEN=$out"
}

test_as_flock_help_and_version_say_flock() {
	"$AS_FLOCK" --help | grep -q '^usage: flock ' || fail "help"
	"$AS_FLOCK" -V | grep -q '^flock (locks ' || fail "version"
}

"$LOCKSD" --socket "$SOCK" --lock-dir "$TMP/locks" 2>"$TMP/locksd.log" &
DPID=$!
wait_until "$LOCKS" --socket "$SOCK" status >/dev/null 2>&1 ||
    bail_no_daemon "$TMP/locksd.log" "locksd did not start"

t "non-block, no-fork, shared, exclusive: flock(1)'s statuses, 3 ways" \
    test_non_block_no_fork_shared_exclusive
t "the descriptor form: flock(1)'s statuses, 3 ways" test_descriptor_form
t "( flock -n 9 ...) 9>f and exec 9>f; flock 9; flock -u 9, 3 ways" \
    test_descriptor_idioms
t "timeout: flock(1)'s statuses, 3 ways" test_timeout
t "close: flock(1)'s statuses, 3 ways" test_close
t "unlock: flock(1)'s statuses, 3 ways" test_unlock
t "exit statuses of the command line: flock(1)'s, 3 ways" \
    test_exit_statuses
t "as flock, with a broker: the broker's lock and token, no fallback" \
    test_as_flock_goes_through_the_broker
t "--verbose says what flock(1) says, on its streams" \
    test_verbose_says_what_flock_says
t "with no broker, the fallback is silent unless --verbose" \
    test_fallback_is_silent_unless_verbose
t "locks run falls back only with --fallback (to locks/NAME for a name)" \
    test_run_falls_back_only_with_fallback
t "LOCKS_TOKEN is unset when there is no broker token" \
    test_no_broker_token_means_no_locks_token
t "as flock, --help and -V say flock" test_as_flock_help_and_version_say_flock
