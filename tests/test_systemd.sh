#!/usr/bin/env bash
#
# locksd under systemd: socket activation through the real
# systemd-socket-activate, the sd_notify messages (READY=1, STATUS=,
# STOPPING=1, WATCHDOG=1) received on a notify socket this test owns, the
# journal's <N> priority prefixes, and the units themselves, checked by
# systemd-analyze verify and security.  Prints one "ok N - ..." or
# "not ok N - ..." line per test (TAP) and exits non-zero if any failed.
#
# usage: test_systemd.sh LOCKSD LOCKS_CLI SOURCE_DIR

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || usage LOCKSD LOCKS_CLI SOURCE_DIR
LOCKSD=$(realpath "$1")
LOCKS=$2
SRC=$3
RECV=$SRC/tests/sd_notify_recv.py
need_tools python3 systemd-socket-activate systemd-analyze man

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-sd.XXXXXX") || exit 1
NOTIFY=$TMP/notify.out
NSOCK=$TMP/n/locksd.sock
NPID=
RPID=
NSTATUS=

# Stop whatever still runs, and clean up, whatever happened.
teardown() {
	local rc=$? pid
	trap - EXIT
	for pid in $NPID $RPID; do
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	finish "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# Milliseconds on the clock python's time.monotonic() reads.
ms() {
	python3 -c 'import time; print(int(time.monotonic() * 1000))'
}

# Start a notify receiver on $1 writing to $2 for at most $3 seconds; its
# pid is in RECV_PID.
start_receiver() {
	python3 "$RECV" "$1" "$2" "$3" >/dev/null 2>>"$TMP/recv.log" &
	RECV_PID=$!
	wait_until test -S "$1" || fail "the notify receiver did not start"
}

# Succeed if file $3 has exactly $1 lines matching regex $2.
lines_are() {
	[ "$(grep -c "$2" "$3")" -eq "$1" ]
}

# The timestamps (ms) of the notify lines matching a regex.
stamps() {
	grep -E "^[0-9]+ $1\$" "$NOTIFY" | cut -d' ' -f1
}

#
# Socket activation.
#

test_socket_activation_serves_and_keeps_the_socket() {
	local dir=$TMP/sa sock=$TMP/sa/locksd.sock pid ino out rc
	mkdir -p "$dir"
	systemd-socket-activate -l "$sock" "$LOCKSD" --lock-dir "$dir/locks" \
	    >"$dir/log" 2>&1 &
	pid=$!
	wait_until test -S "$sock" || fail "systemd-socket-activate made no socket"
	ino=$(stat -c %i "$sock")
	"$LOCKS" --socket "$sock" status >"$dir/status" 2>&1 ||
	    fail "locks status: exit $?: $(cat "$dir/status" "$dir/log")"
	grep -q '^connections: 1$' "$dir/status" ||
	    fail "status: $(cat "$dir/status")"
	out=$("$LOCKS" --socket "$sock" run sa-lock -- sh -c 'echo $LOCKS_NAME')
	[ "$out" = sa-lock ] || fail "locks run printed: $out"
	[ -f "$dir/locks/sa-lock" ] || fail "no lock file in --lock-dir"
	grep -q 'socket activation' "$dir/log" ||
	    fail "locksd did not use the inherited socket: $(cat "$dir/log")"
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc after SIGTERM: $(cat "$dir/log")"
	[ -S "$sock" ] || fail "locksd removed the socket it was given"
	[ "$(stat -c %i "$sock")" = "$ino" ] ||
	    fail "the socket file was replaced"
	! grep -Eq 'unlink|removing' "$dir/log" ||
	    fail "locksd touched the socket: $(cat "$dir/log")"
}

test_every_inherited_socket_is_served() {
	local dir=$TMP/sa2 pid rc
	mkdir -p "$dir"
	systemd-socket-activate -l "$dir/a.sock" -l "$dir/b.sock" "$LOCKSD" \
	    >"$dir/log" 2>&1 &
	pid=$!
	wait_until test -S "$dir/b.sock" || fail "no sockets"
	"$LOCKS" --socket "$dir/a.sock" run sa2 -- true ||
	    fail "first socket: exit $?: $(cat "$dir/log")"
	"$LOCKS" --socket "$dir/b.sock" run sa2 -- true ||
	    fail "second socket: exit $?: $(cat "$dir/log")"
	# Without --lock-dir, locks/ beside the first inherited socket.
	[ -f "$dir/locks/sa2" ] || fail "lock file not in $dir/locks"
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc after SIGTERM"
	[ -S "$dir/a.sock" ] && [ -S "$dir/b.sock" ] ||
	    fail "an inherited socket was removed"
}

test_a_datagram_socket_is_refused() {
	local dir=$TMP/sa3 pid rc
	mkdir -p "$dir"
	systemd-socket-activate -d -l "$dir/d.sock" "$LOCKSD" \
	    --lock-dir "$dir/locks" >"$dir/log" 2>&1 &
	pid=$!
	wait_until test -S "$dir/d.sock" || fail "no socket"
	# The tool runs locksd on the first datagram.
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"x", sys.argv[1])' "$dir/d.sock" || fail "cannot send"
	wait "$pid"
	rc=$?
	[ "$rc" -eq 1 ] || fail "exit $rc, not 1: $(cat "$dir/log")"
	grep -q 'not a listening Unix stream socket' "$dir/log" ||
	    fail "no reason given: $(cat "$dir/log")"
}

#
# sd_notify: one locksd with NOTIFY_SOCKET and WATCHDOG_USEC=200000.
#

start_notified_daemon() {
	mkdir -p "$TMP/n"
	start_receiver "$TMP/notify.sock" "$NOTIFY" 60
	RPID=$RECV_PID
	NOTIFY_SOCKET=$TMP/notify.sock WATCHDOG_USEC=200000 \
	    "$LOCKSD" --socket "$NSOCK" --lock-dir "$TMP/n/locks" \
	    2>"$TMP/n/log" &
	NPID=$!
}

test_ready_once_it_accepts_connections() {
	wait_until grep -q ' READY=1$' "$NOTIFY" ||
	    fail "no READY=1: $(cat "$NOTIFY" "$TMP/n/log")"
	"$LOCKS" --socket "$NSOCK" status >/dev/null ||
	    fail "READY=1 sent, but status failed: exit $?"
	[ "$(stamps 'READY=1' | wc -l)" -eq 1 ] || fail "READY=1 sent twice"
}

test_status_summarises_connections_locks_and_waiters() {
	grep -q ' STATUS=[0-9]* connections, [0-9]* locks held, [0-9]* waiters$' \
	    "$NOTIFY" || fail "no STATUS= summary: $(cat "$NOTIFY")"
	# The first one comes with READY=1.
	[ "$(stamps 'READY=1')" = "$(stamps 'STATUS=.*' | head -1)" ] ||
	    fail "READY=1 came without a STATUS="
}

test_status_follows_changes_at_most_once_a_second() {
	local i prev s
	"$LOCKS" --socket "$NSOCK" run sd-status -- sleep 30 \
	    >/dev/null 2>&1 &
	# Churn: many changes within a second make at most one update.
	for ((i = 0; i < 5; i++)); do
		"$LOCKS" --socket "$NSOCK" status >/dev/null
		sleep 0.05
	done
	wait_until grep -q ' STATUS=1 connections, 1 locks held, 0 waiters$' \
	    "$NOTIFY" || fail "no STATUS= with the lock: $(grep STATUS "$NOTIFY")"
	prev=
	for s in $(stamps 'STATUS=[0-9].*'); do
		[ -z "$prev" ] || [ $((s - prev)) -ge 900 ] ||
		    fail "two STATUS= $((s - prev)) ms apart: $(cat "$NOTIFY")"
		prev=$s
	done
}

test_watchdog_pings_at_half_watchdog_usec() {
	local ready now pings
	ready=$(stamps 'READY=1')
	[ -n "$ready" ] || fail "no READY=1"
	now=$(ms)
	[ "$now" -ge $((ready + 2000)) ] ||
	    sleep "$(awk -v d=$((ready + 2000 - now)) 'BEGIN { print d / 1000 }')"
	pings=$(stamps 'WATCHDOG=1' | awk -v r="$ready" '$1 <= r + 2000')
	[ "$(echo "$pings" | grep -c .)" -ge 3 ] ||
	    fail "fewer than 3 WATCHDOG=1 in 2 s: $(tr "\n" " " <<<"$pings")"
	# WATCHDOG_USEC=200000: a ping about every 100 ms.
	echo "$pings" | awk 'NR > 1 { print $1 - prev } { prev = $1 }' |
	    sort -n | awk '{ d[NR] = $1 } END {
		m = d[int((NR + 1) / 2)]
		if (m < 60 || m > 200) {
			print "# median interval " m " ms, not about 100"
			exit 1
		} }' || fail "intervals: $(tr "\n" " " <<<"$pings")"
	grep -q 'watchdog: pinging every 100 ms' "$TMP/n/log" ||
	    fail "no watchdog log line: $(cat "$TMP/n/log")"
}

stop_notified_daemon() {
	kill -TERM "$NPID"
	wait "$NPID"
	NSTATUS=$?
	NPID=
	wait_until grep -q ' STOPPING=1$' "$NOTIFY"
	kill -TERM "$RPID" 2>/dev/null
	wait "$RPID"
	RPID=
}

# Under systemd, SIGTERM first hands everything to the descriptor store
# (systemd 252 cannot say whether there is one), the state last; the
# socket is left, as the store may pass it to the next instance, which
# would otherwise find a stale one and bind anew.
test_stopping_on_sigterm() {
	grep -q ' STOPPING=1$' "$NOTIFY" || fail "no STOPPING=1: $(cat "$NOTIFY")"
	[ "$NSTATUS" -eq 0 ] || fail "exit $NSTATUS"
	grep -q ' FDSTORE=1$' "$NOTIFY" || fail "no FDSTORE=1: $(cat "$NOTIFY")"
	grep ' FDNAME=' "$NOTIFY" | tail -1 | grep -q ' FDNAME=~=state$' ||
	    fail "the state did not go last: $(cat "$NOTIFY")"
	[ "$(stamps 'FDNAME=~=state')" -le "$(stamps 'STOPPING=1')" ] ||
	    fail "STOPPING=1 came before the handover ended"
	[ -S "$NSOCK" ] || fail "its socket was removed though the store may" \
	    "hand it to the next instance"
}

test_no_watchdog_unless_asked_for_this_pid() {
	local out=$TMP/nw.out pid1 pid2 rpid
	start_receiver "$TMP/nw.sock" "$out" 10
	rpid=$RECV_PID
	# Two daemons: two lock dirs, as one daemon owns its lock dir.
	NOTIFY_SOCKET=$TMP/nw.sock "$LOCKSD" --socket "$TMP/nw1.sock" \
	    --lock-dir "$TMP/nw1-locks" 2>/dev/null &
	pid1=$!
	# WATCHDOG_PID names another process: not ours to ping for.
	NOTIFY_SOCKET=$TMP/nw.sock WATCHDOG_USEC=200000 WATCHDOG_PID=1 \
	    "$LOCKSD" --socket "$TMP/nw2.sock" --lock-dir "$TMP/nw2-locks" \
	    2>/dev/null &
	pid2=$!
	wait_until lines_are 2 ' READY=1$' "$out" ||
	    fail "not both READY=1: $(cat "$out")"
	sleep 0.6
	! grep -q 'WATCHDOG=1' "$out" || fail "pinged: $(cat "$out")"
	kill -TERM "$pid1" "$pid2" "$rpid"
	wait "$pid1" "$pid2" "$rpid"
}

#
# Logging.
#

test_journal_lines_get_priority_prefixes() {
	local log=$TMP/journal.log
	: >"$log"
	JOURNAL_STREAM=$(stat -c '%d:%i' "$log") "$LOCKSD" \
	    --socket "$TMP/j.sock" --lock-dir /nonexistent/locks/dir 2>>"$log"
	[ $? -eq 1 ] || fail "locksd started with a missing lock dir"
	grep -q '^<2>mkdir /nonexistent/locks/dir: ' "$log" ||
	    fail "no <2> line: $(cat "$log")"
	# Inherited by a process whose stderr is elsewhere: no prefixes.
	: >"$log"
	JOURNAL_STREAM=1:1 "$LOCKSD" --socket "$TMP/j.sock" \
	    --lock-dir /nonexistent/locks/dir 2>>"$log"
	grep -q '^locksd: mkdir /nonexistent/locks/dir: ' "$log" ||
	    fail "JOURNAL_STREAM of another file was trusted: $(cat "$log")"
}

#
# The units.
#

# Copies of the units, running the built locksd instead of the installed
# one (verify checks that ExecStart's binary exists), and the man pages
# they name under a MANPATH of their own.
units_for_verify() {
	mkdir -p "$TMP/units" "$TMP/man/man8" "$TMP/man/man1"
	sed "s|^ExecStart=/usr/local/sbin/locksd |ExecStart=$LOCKSD |" \
	    "$SRC/systemd/locksd.service" >"$TMP/units/locksd.service"
	cp "$SRC/systemd/locksd.socket" "$TMP/units/locksd.socket"
	cp "$SRC/daemon/locksd.8" "$TMP/man/man8/"
	cp "$SRC/client/locks.1" "$TMP/man/man1/"
	grep -q "^ExecStart=$LOCKSD " "$TMP/units/locksd.service"
}

test_systemd_analyze_verify_is_silent() {
	local out rc
	units_for_verify || fail "the unit's ExecStart is not /usr/local/sbin/locksd"
	out=$(cd "$TMP/units" && MANPATH=$TMP/man systemd-analyze verify \
	    locksd.service locksd.socket 2>&1)
	rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc: $out"
	[ -z "$out" ] || fail "verify said: $out"
}

test_security_exposure_at_most_2() {
	local out level
	out=$(systemd-analyze security --offline=true \
	    "$SRC/systemd/locksd.service" 2>&1) || fail "exit $?: $out"
	level=$(echo "$out" |
	    sed -n 's/.*Overall exposure level for locksd.service: \([0-9.]*\).*/\1/p')
	[ -n "$level" ] || fail "no exposure level: $out"
	echo "# exposure $level"
	awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' ||
	    fail "exposure $level > 2.0: $(echo "$out" | grep '✗')"
}

# Succeed if the unit file $1 has the line $2 (a regex).
has() {
	grep -Eq "^$2\$" "$SRC/systemd/$1" || fail "$1 lacks $2"
}

test_units_keep_their_promises() {
	has locksd.socket 'ListenStream=/run/locksd/locksd.sock'
	has locksd.socket 'SocketMode=0666'
	has locksd.socket 'RuntimeDirectory=locksd'
	has locksd.service 'Type=notify'
	has locksd.service 'WatchdogSec=[1-9][0-9]*s?'
	has locksd.service 'LimitNOFILE=[0-9]{6,}'
	has locksd.service 'User=locksd'
	has locksd.service 'ExecReload=/bin/kill -HUP \$MAINPID'
	# Thousands: systemd 252's cost of storing n descriptors is n*n/2.
	has locksd.service 'FileDescriptorStoreMax=[1-8][0-9]{3}'
	# The daemon's own bound is the store's.
	[ "$(sed -n 's/^FileDescriptorStoreMax=//p' \
	    "$SRC/systemd/locksd.service")" = \
	    "$(sed -n 's/^Environment=FDSTORE=//p' \
	    "$SRC/systemd/locksd.service")" ] ||
	    fail "Environment=FDSTORE= is not FileDescriptorStoreMax="
	has locksd.service 'RuntimeDirectory=locksd'
	has locksd.service 'RuntimeDirectoryMode=0755'
	has locksd.service 'RuntimeDirectoryPreserve=yes'
	has locksd.service 'ExecStart=/usr/local/sbin/locksd --socket /run/locksd/locksd.sock --lock-dir /run/locksd/locks'
	# DynamicUser would hide a preserved RuntimeDirectory in /run/private.
	! grep -q '^DynamicUser=yes' "$SRC/systemd/locksd.service" ||
	    fail "DynamicUser=yes with RuntimeDirectoryPreserve=yes"
	grep -Eq '^u locksd ' "$SRC/systemd/locksd.sysusers" ||
	    fail "no sysusers.d entry for the locksd user"
}

t "socket activation: locksd serves the socket it is given and leaves it" \
    test_socket_activation_serves_and_keeps_the_socket
t "socket activation: every inherited socket is served" \
    test_every_inherited_socket_is_served
t "socket activation: a datagram socket is refused" \
    test_a_datagram_socket_is_refused

start_notified_daemon
t "READY=1 once it accepts connections" \
    test_ready_once_it_accepts_connections
t "STATUS= summarises connections, locks held and waiters" \
    test_status_summarises_connections_locks_and_waiters
t "STATUS= follows changes, at most once a second" \
    test_status_follows_changes_at_most_once_a_second
t "WATCHDOG=1 about every 100 ms with WATCHDOG_USEC=200000" \
    test_watchdog_pings_at_half_watchdog_usec
stop_notified_daemon
t "STOPPING=1 on SIGTERM, after handing all to the descriptor store; exit 0" \
    test_stopping_on_sigterm
t "no WATCHDOG=1 without WATCHDOG_USEC, or for another WATCHDOG_PID" \
    test_no_watchdog_unless_asked_for_this_pid

t "stderr that is the journal gets <N> priorities, other stderr not" \
    test_journal_lines_get_priority_prefixes

t "systemd-analyze verify of the units prints nothing" \
    test_systemd_analyze_verify_is_silent
t "systemd-analyze security rates locksd.service at 2.0 or lower" \
    test_security_exposure_at_most_2
t "the units keep the socket path, notify, watchdog, limits and lock dir" \
    test_units_keep_their_promises
