#!/usr/bin/env bash
#
# The Debian packages, built and installed on this machine by the
# README's package command (apt-get build-dep, dpkg-buildpackage -b -us
# -uc, dpkg -i) in a copy of the tree, checked with lintian, used,
# installed again, and purged: the files are where they
# should be, systemd-analyze verify says nothing of the units, pkg-config
# and find_package(locks) find liblocks, python3 imports locks,
# tmpfiles.d makes /run/locksd/locks for flock(1) and for the locksd user,
# cron's PATH finds locks, and after dpkg --purge nothing the packages
# installed or made is left.  Prints one "ok N - ..." or "not ok N - ..."
# line per test (TAP) and exits non-zero if any failed.
#
# usage: test_package.sh SOURCE_DIR
#
# It installs and purges packages on the machine it runs on, so it runs
# only with LOCKS_PACKAGE_TEST=1 (as .ci/run sets, as root on a throwaway
# machine); otherwise it says why and exits 77, which ctest reports as
# skipped.  With LOCKS_PACKAGE_TEST=1 a missing tool or not being root is
# a failure, and so are packages of these names already installed (they
# would be purged).

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || usage SOURCE_DIR
SRC=$(realpath "$1")
PACKAGES="locksd locks liblocks0 liblocks-dev python3-locks"

if [ "${LOCKS_PACKAGE_TEST:-}" != 1 ]; then
	echo "# skipped: set LOCKS_PACKAGE_TEST=1 to build the Debian" \
	    "packages and install and purge them on this machine (as root)"
	echo "1..0 # SKIP LOCKS_PACKAGE_TEST is not 1"
	exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "Bail out! dpkg -i needs root"
	exit 1
fi
need_tools dpkg-buildpackage dh lintian dpkg pkg-config cmake cc \
    systemd-analyze systemd-tmpfiles flock runuser man /usr/bin/python3
for p in $PACKAGES; do
	if dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null |
	    grep -qv '^not-installed$'; then
		echo "Bail out! $p is installed here; this test would purge it"
		exit 1
	fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-package.XXXXXX") || exit 1
chmod 0755 "$TMP"
OUT=$TMP/out
SOCK=$TMP/locksd.sock
UNITDIR=$(pkg-config --variable=systemdsystemunitdir systemd)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
VERSION=$(sed -n 's/^project(locks VERSION \([0-9.]*\).*/\1/p' \
    "$SRC/CMakeLists.txt")
DPID=

# Purge whatever is still installed of ours, then stop the daemon and
# finish with the script's status (the EXIT trap).
purge_and_finish() {
	local rc=$?
	# shellcheck disable=SC2086
	dpkg --purge $PACKAGES >/dev/null 2>&1
	(exit "$rc")
	stop_daemon_and_finish
}
trap purge_and_finish EXIT
trap 'exit 130' INT TERM

# The .debs built, one path a line, without the debug symbols.
debs() {
	local p
	for p in $PACKAGES; do
		ls "$OUT/${p}_${VERSION}_"*.deb
	done
}

# The README's package command: the block after "<!-- package-command -->".
readme_package_command() {
	awk '/<!-- package-command -->/ { grab = 1; next }
	    grab && /^```/ { if (inblock) exit; inblock = 1; next }
	    grab && inblock { print }' "$SRC/README.md"
}

test_the_readme_command_builds_and_installs_the_packages() {
	local cmd p
	cmd=$(readme_package_command)
	[ -n "$cmd" ] || fail "no <!-- package-command --> in README.md"
	# dpkg-buildpackage writes ../*.deb: a copy, in a directory of its own.
	mkdir -p "$OUT/src" || fail "mkdir"
	tar -C "$SRC" --exclude=./.git --exclude='./build*' \
	    --exclude='./obj-*' -cf - . | tar -C "$OUT/src" -xf - ||
	    fail "cannot copy the tree"
	echo "# + $cmd"
	(cd "$OUT/src" && eval "$cmd") >"$TMP/build.log" 2>&1 ||
	    fail "exit $?: $(tail -n 40 "$TMP/build.log")"
	for p in $PACKAGES; do
		ls "$OUT/${p}_${VERSION}_"*.deb >/dev/null 2>&1 ||
		    fail "no $p ${VERSION} in: $(ls "$OUT")"
		[ "$(dpkg-query -W -f '${db:Status-Status} ${Version}' "$p")" = \
		    "installed $VERSION" ] || fail "$p is not installed"
	done
}

test_lintian_finds_no_errors_or_warnings() {
	local out
	out=$(lintian --fail-on none "$OUT"/locks_"${VERSION}"_*.changes 2>&1)
	printf '%s\n' "$out" | sed 's/^/# lintian: /'
	! grep -q '^[EW]: ' <<<"$out" ||
	    fail "lintian: $(grep '^[EW]: ' <<<"$out")"
}

# Fail unless the file $2 is installed and belongs to the package $1.
owned_by() {
	[ -e "$2" ] || fail "missing $2"
	[[ $(dpkg -S "$2" 2>/dev/null) =~ ^$1(:[a-z0-9]+)?:\ $2$ ]] ||
	    fail "$2 belongs to: $(dpkg -S "$2" 2>&1)"
}

test_files_are_where_they_should_be() {
	owned_by locksd /usr/sbin/locksd
	owned_by locksd "$UNITDIR/locksd.service"
	owned_by locksd "$UNITDIR/locksd.socket"
	owned_by locksd /usr/lib/sysusers.d/locksd.conf
	owned_by locksd /usr/lib/tmpfiles.d/locksd.conf
	owned_by locksd /usr/share/man/man8/locksd.8.gz
	owned_by locks /usr/bin/locks
	owned_by locks /usr/share/man/man1/locks.1.gz
	owned_by locks /usr/share/bash-completion/completions/locks
	owned_by liblocks0 "/usr/lib/$MULTIARCH/liblocks.so.0"
	owned_by liblocks-dev /usr/include/locks.h
	owned_by liblocks-dev "/usr/lib/$MULTIARCH/liblocks.so"
	owned_by liblocks-dev "/usr/lib/$MULTIARCH/liblocks.a"
	owned_by liblocks-dev "/usr/lib/$MULTIARCH/pkgconfig/locks.pc"
	owned_by liblocks-dev "/usr/lib/$MULTIARCH/cmake/locks/locksConfig.cmake"
	owned_by python3-locks /usr/lib/python3/dist-packages/locks/__init__.py
	# shellcheck disable=SC2086
	! dpkg -L $PACKAGES | grep -v -e '^/usr/' -e "^$UNITDIR/" \
	    -e "^$UNITDIR$" -e '^/usr$' -e '^/\.$' -e '^/lib$' \
	    -e '^/lib/systemd$' -e '^$' ||
	    fail "installed outside /usr and the unit dir"
	grep -qx 'ExecStart=/usr/sbin/locksd --socket /run/locksd/locksd.sock --lock-dir /run/locksd/locks' \
	    "$UNITDIR/locksd.service" ||
	    fail "$(grep ExecStart "$UNITDIR/locksd.service")"
	man -w locksd.8 >/dev/null && man -w locks.1 >/dev/null ||
	    fail "man does not find the pages"
}

test_the_scripts_made_the_user_the_lock_dir_and_enabled_the_socket() {
	local pw
	pw=$(getent passwd locksd) || fail "no user locksd"
	[[ $pw == *:/usr/sbin/nologin ]] || fail "user: $pw"
	[ "$(stat -c '%U:%G %a' /run/locksd/locks)" = "locksd:locksd 755" ] ||
	    fail "/run/locksd/locks: $(stat -c '%U:%G %a' /run/locksd/locks)"
	[ -L /etc/systemd/system/sockets.target.wants/locksd.socket ] ||
	    fail "locksd.socket is not enabled"
	[ ! -e /etc/systemd/system/multi-user.target.wants/locksd.service ] ||
	    fail "locksd.service is enabled: the socket starts it"
}

test_systemd_analyze_verify_is_silent() {
	local out
	out=$(systemd-analyze verify "$UNITDIR/locksd.socket" \
	    "$UNITDIR/locksd.service" 2>&1) || fail "exit $?: $out"
	[ -z "$out" ] || fail "verify said: $out"
}

test_pkg_config_and_find_package_find_liblocks() {
	local out
	[[ $(pkg-config --libs locks) =~ ^-llocks\ *$ ]] ||
	    fail "pkg-config --libs locks: $(pkg-config --libs locks 2>&1)"
	[ "$(pkg-config --modversion locks)" = "$VERSION" ] ||
	    fail "version $(pkg-config --modversion locks)"
	# shellcheck disable=SC2046
	cc -Wall -Werror -o "$TMP/probe" "$SRC/tests/install_probe.c" \
	    $(pkg-config --cflags --libs locks) || fail "does not compile"
	mkdir -p "$TMP/consumer" && cp "$SRC/tests/install_probe.c" \
	    "$TMP/consumer/" || fail "cp"
	cat >"$TMP/consumer/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(consumer LANGUAGES C)
find_package(locks 0.1 REQUIRED)
add_executable(probe install_probe.c)
target_link_libraries(probe PRIVATE locks::locks)
EOF
	out=$(cmake -S "$TMP/consumer" -B "$TMP/consumer/build" 2>&1 &&
	    cmake --build "$TMP/consumer/build" 2>&1) || fail "cmake: $out"
}

start_packaged_daemon() {
	/usr/sbin/locksd --socket "$SOCK" --lock-dir "$TMP/locks" \
	    2>"$TMP/locksd.log" &
	DPID=$!
	wait_until /usr/bin/locks --socket "$SOCK" status >/dev/null 2>&1
}

test_programs_built_against_the_packages_take_locks() {
	local p out
	for p in "$TMP/probe" "$TMP/consumer/build/probe"; do
		out=$("$p" "$SOCK") || fail "$p: $out"
		[[ $out =~ ^acquired\ install-probe\ token\ [0-9]+$ ]] ||
		    fail "$p printed: $out"
	done
}

test_python3_imports_the_packaged_module() {
	local out
	out=$(cd / && env -i PATH=/usr/bin:/bin /usr/bin/python3 -c '
import sys, locks, locks.aio
with locks.Mutex("package-python", socket=sys.argv[1]) as m:
    print(locks.__file__, m.token > 0)' "$SOCK" 2>&1) || fail "$out"
	[ "$out" = "/usr/lib/python3/dist-packages/locks/__init__.py True" ] ||
	    fail "printed: $out"
}

test_crons_path_finds_locks() {
	local out
	out=$(env -i PATH=/usr/bin:/bin sh -c 'command -v locks') ||
	    fail "not found with PATH=/usr/bin:/bin"
	[ "$out" = /usr/bin/locks ] || fail "found $out"
	out=$(env -i PATH=/usr/bin:/bin LOCKS_SOCKET="$SOCK" sh -c \
	    'locks run cron-job -- sh -c "echo \$LOCKS_NAME"') ||
	    fail "locks run: exit $?"
	[ "$out" = cron-job ] || fail "printed: $out"
}

test_tmpfiles_makes_the_lock_dir_at_boot() {
	local pid
	# As at boot: no /run/locksd, no daemon.
	rm -rf /run/locksd
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/locksd.conf ||
	    fail "systemd-tmpfiles --create: exit $?"
	[ "$(stat -c '%U:%G %a' /run/locksd/locks)" = "locksd:locksd 755" ] ||
	    fail "/run/locksd/locks: $(stat -c '%U:%G %a' /run/locksd/locks)"
	flock /run/locksd/locks/package-flock true || fail "flock: exit $?"
	# And the daemon, as its user, takes that directory as its lock dir.
	runuser -u locksd -- /usr/sbin/locksd --socket /run/locksd/test.sock \
	    --lock-dir /run/locksd/locks 2>"$TMP/locksd-user.log" &
	pid=$!
	wait_until /usr/bin/locks --socket /run/locksd/test.sock status \
	    >/dev/null 2>&1 || fail "locksd as locksd: $(cat "$TMP/locksd-user.log")"
	/usr/bin/locks --socket /run/locksd/test.sock run package-broker -- \
	    true || fail "locks run: exit $?"
	[ "$(stat -c %U /run/locksd/locks/package-broker)" = locksd ] ||
	    fail "lock file: $(stat -c %U /run/locksd/locks/package-broker)"
	kill -TERM "$pid" && wait "$pid"
	rm -f /run/locksd/test.sock
}

test_dpkg_i_again_upgrades_in_place() {
	# shellcheck disable=SC2046
	dpkg -i $(debs) >"$TMP/reinstall.log" 2>&1 ||
	    fail "dpkg -i: $(cat "$TMP/reinstall.log")"
}

test_purge_leaves_nothing_behind() {
	local f left=
	# shellcheck disable=SC2086
	dpkg -L $PACKAGES | sort -u >"$TMP/files" || fail "dpkg -L"
	kill -TERM "$DPID" && wait "$DPID"
	# shellcheck disable=SC2086
	dpkg --purge $PACKAGES >"$TMP/purge.log" 2>&1 ||
	    fail "dpkg --purge: $(cat "$TMP/purge.log")"
	! grep -i 'warning' "$TMP/purge.log" || fail "dpkg warned"
	# A directory may stay only if another package has it or it holds
	# something else.
	while read -r f; do
		# (-d follows a symbolic link: /lib on a merged /usr.)
		if [ -d "$f" ]; then
			dpkg -S "$f" >/dev/null 2>&1 || [ -n "$(ls -A "$f")" ] ||
			    left="$left $f"
		elif [ -e "$f" ] || [ -L "$f" ]; then
			left="$left $f"
		fi
	done <"$TMP/files"
	[ -z "$left" ] || fail "left:$left"
	[ ! -e /run/locksd ] || fail "left /run/locksd"
	! getent passwd locksd >/dev/null || fail "left the user locksd"
	! getent group locksd >/dev/null || fail "left the group locksd"
	[ ! -L /etc/systemd/system/sockets.target.wants/locksd.socket ] ||
	    fail "left the socket's enablement"
	! ls /var/lib/systemd/deb-systemd-helper-enabled/ 2>/dev/null |
	    grep -q locksd || fail "left deb-systemd-helper's state"
}

t "the README's package command builds and installs $PACKAGES" \
    test_the_readme_command_builds_and_installs_the_packages
[ "$failed" -eq 0 ] || exit 1
t "lintian: no errors and no warnings" test_lintian_finds_no_errors_or_warnings
t "binaries, units, sysusers, tmpfiles, locks.pc, CMake package, Python" \
    test_files_are_where_they_should_be
t "the user locksd, /run/locksd/locks and locksd.socket enabled" \
    test_the_scripts_made_the_user_the_lock_dir_and_enabled_the_socket
t "systemd-analyze verify of the installed units prints nothing" \
    test_systemd_analyze_verify_is_silent
t "pkg-config --libs locks, and find_package(locks) with locks::locks" \
    test_pkg_config_and_find_package_find_liblocks
start_packaged_daemon ||
    bail_no_daemon "$TMP/locksd.log" "the packaged locksd did not start"
t "programs built against the packages take locks" \
    test_programs_built_against_the_packages_take_locks
t "python3 -c 'import locks' imports the packaged module" \
    test_python3_imports_the_packaged_module
t "cron's PATH (/usr/bin:/bin) finds locks and locks run works" \
    test_crons_path_finds_locks
t "tmpfiles.d makes /run/locksd/locks: flock(1) and the locksd user use it" \
    test_tmpfiles_makes_the_lock_dir_at_boot
t "dpkg -i of the same packages again (the upgrade path)" \
    test_dpkg_i_again_upgrades_in_place
t "dpkg --purge leaves no file, directory, user or state behind" \
    test_purge_leaves_nothing_behind
