#!/usr/bin/env bash
#
# The bash completion (client/completion/locks) against a real locksd on
# a temporary socket: subcommands and options come from the CLI's own
# help, lock names from the broker.  TAP, as lib.sh prints it.
#
# usage: test_completion.sh LOCKSD LOCKS_CLI COMPLETION_FILE

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || usage LOCKSD LOCKS_CLI COMPLETION_FILE
LOCKSD=$1
LOCKS=$2
COMPLETION=$3

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-completion.XXXXXX") || exit 1
SOCK=$TMP/locksd.sock
DPID=

trap stop_daemon_and_finish EXIT
trap 'exit 130' INT TERM

# Complete the words given, the last one being the word under the cursor,
# with $LOCKS first on the line; print the candidates, one per line.
complete_words() {
	(
		# shellcheck disable=SC1090
		. "$COMPLETION"
		COMP_WORDS=("$LOCKS" "$@")
		COMP_CWORD=$#
		COMP_LINE="${COMP_WORDS[*]}"
		COMP_POINT=${#COMP_LINE}
		COMPREPLY=()
		_locks
		printf '%s\n' "${COMPREPLY[@]}"
	)
}

# Fail unless candidate $1 is in the candidates on stdin.
has() {
	grep -qxF -- "$1" || fail "no candidate $1"
}

test_subcommands_come_from_the_help() {
	local out
	out=$(complete_words "")
	for cmd in run hold check list status metrics; do
		has "$cmd" <<<"$out"
	done
	[ "$(grep -cx run <<<"$out")" = 1 ] || fail "run offered twice"
	[ "$(complete_words "st")" = status ] || fail "st: $(complete_words st)"
}

test_options_come_from_the_help() {
	local out
	out=$(complete_words run --)
	for opt in --shared --exclusive --nonblock --timeout --socket \
	    --output --noheadings --raw; do
		has "$opt" <<<"$out"
	done
	[ "$(complete_words run --nonb)" = --nonblock ] ||
	    fail "--nonb: $(complete_words run --nonb)"
}

test_names_come_from_the_broker() {
	local out
	"$LOCKS" --socket "$SOCK" run completion-alpha -- sleep 30 &
	wait_until sh -c "'$LOCKS' --socket '$SOCK' list | grep -q completion-alpha" ||
	    fail "the lock was never listed"
	out=$(complete_words --socket "$SOCK" run completion-a)
	[ "$out" = completion-alpha ] || fail "run completion-a: $out"
	out=$(LOCKS_SOCKET=$SOCK complete_words list "")
	has completion-alpha <<<"$out"
}

test_list_output_completes_columns_from_the_help() {
	local out
	out=$(complete_words list -o "")
	for col in NAME, STATE, PID, USER, SINCE, HELD, TOKEN,; do
		has "$col" <<<"$out"
	done
	[ "$(complete_words list -o NAME,P)" = NAME,PID, ] ||
	    fail "NAME,P: $(complete_words list -o NAME,P)"
	[ "$(complete_words list --output +TO)" = +TOKEN, ] ||
	    fail "+TO: $(complete_words list --output +TO)"
	[ "$(complete_words list --output=HE)" = --output=HELD, ] ||
	    fail "--output=HE: $(complete_words list --output=HE)"
	# run's -o is flock's --close: a lock name follows, not columns.
	out=$(LOCKS_SOCKET=$SOCK complete_words run -o "")
	grep -q , <<<"$out" && fail "run -o offers columns: $out"
	return 0
}

test_new_options_and_paths() {
	local out
	out=$(complete_words run --)
	for opt in --unlock --fallback --close --no-fork --on-contended \
	    --detect-deadlock; do
		has "$opt" <<<"$out"
	done
	out=$(complete_words run --on-contended '')
	has term <<<"$out"
	has ignore <<<"$out"
	has -u <<<"$(complete_words run -)"
	mkdir -p "$TMP/dir.c"
	touch "$TMP/dir.c/lockfile"
	out=$(LOCKS_SOCKET=$SOCK complete_words run "$TMP/dir.c/lo")
	[ "$out" = "$TMP/dir.c/lockfile" ] || fail "path: $out"
}

test_nothing_after_the_double_dash() {
	local out
	out=$(LOCKS_SOCKET=$SOCK complete_words run x -- "")
	[ -z "$out" ] || fail "candidates after --: $out"
}

"$LOCKSD" --socket "$SOCK" --lock-dir "$TMP/locks" 2>"$TMP/locksd.log" &
DPID=$!
wait_until "$LOCKS" --socket "$SOCK" status >/dev/null 2>&1 ||
    bail_no_daemon "$TMP/locksd.log" "locksd did not start"

t "subcommands come from locks --help" test_subcommands_come_from_the_help
t "options come from locks --help" test_options_come_from_the_help
t "lock names come from the broker on the socket given" \
    test_names_come_from_the_broker
t "list -o completes the columns --help lists" \
    test_list_output_completes_columns_from_the_help
t "-u, --unlock, --fallback, and paths for a target with a /" \
    test_new_options_and_paths
t "nothing is offered for the command after --" \
    test_nothing_after_the_double_dash
