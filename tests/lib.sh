# shellcheck shell=bash
#
# What the shell tests share: TAP reporting (one "ok N - ..." or
# "not ok N - ..." line per test, and the plan at the end), running each
# test in a subshell and ending what it left in the background, and
# retrying a command until it succeeds.  A script sources it with
# . "$(dirname "$0")/lib.sh", then sets TMP to its scratch directory.

failed=0
n=0

# Say how to call the script and exit 2; the arguments name its operands.
usage() {
	echo "usage: $0 $*" >&2
	exit 2
}

# Bail out unless every tool named is on $PATH.
need_tools() {
	local tool
	for tool in "$@"; do
		if ! command -v "$tool" >/dev/null; then
			echo "Bail out! these tests need $tool"
			exit 1
		fi
	done
}

# Bail out because the shared daemon did not start, showing its log $1.
bail_no_daemon() {
	echo "Bail out! $2"
	sed 's/^/# locksd: /' "$1"
	failed=$((failed + 1))
	exit 1
}

# Print the plan, remove $TMP and exit: 1 if a test failed, else $1.
finish() {
	echo "1..$n"
	rm -rf "$TMP"
	if [ "$failed" -ne 0 ]; then
		echo "# $failed of $n failed"
		exit 1
	fi
	exit "$1"
}

# Milliseconds on a monotonic-enough clock (bash 5).
ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

# The EXIT trap of a script with daemons, their pids in $DPID (one, or
# several separated by spaces): stop them, then finish with the script's
# own status.
stop_daemon_and_finish() {
	local rc=$? pid
	trap - EXIT
	for pid in ${DPID:-}; do
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	finish "$rc"
}

# Retry a command for up to 5 s.
wait_until() {
	local i
	for ((i = 0; i < 250; i++)); do
		"$@" && return 0
		sleep 0.02
	done
	return 1
}

# Fail the current test with a message.  Tests run in a subshell (see t),
# so this ends only the test.
fail() {
	echo "# $*"
	exit 1
}

# Whether pid $1 ran in the background before the current test began.
shared_job() {
	local pid
	for pid in $SHARED_JOBS; do
		[ "$pid" = "$1" ] && return 0
	done
	return 1
}

# End the background processes of a test: SIGTERM makes "locks run" stop
# its command too.  A subshell's job table starts as a copy of its
# parent's, so leave the shared daemons (the jobs from before) alone.
reap() {
	local pid
	for pid in $(jobs -p); do
		shared_job "$pid" || kill -TERM "$pid" 2>/dev/null
	done
	for pid in $(jobs -p); do
		shared_job "$pid" || wait "$pid" 2>/dev/null
	done
}

# Run one test function in a subshell; report it as ok or not ok, with its
# output as comments.
t() {
	local desc=$1 out
	shift
	n=$((n + 1))
	SHARED_JOBS=$(jobs -p)
	# exec 2>&1, not "$@" 2>&1: a redirection on a function call saves
	# fd 2 at fd 10 or above, where a test may open its own descriptor.
	if out=$(trap reap EXIT; exec 2>&1; "$@"); then
		echo "ok $n - $desc"
	else
		failed=$((failed + 1))
		echo "not ok $n - $desc"
		[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^#* \{0,1\}/# /'
	fi
}
