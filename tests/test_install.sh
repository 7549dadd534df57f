#!/usr/bin/env bash
#
# Install the build into a temporary DESTDIR the way a package would, and
# use only what was installed: the files are where GNUInstallDirs and the
# SYSTEMD_* directories say, liblocks has its SONAME, and a program built
# with the installed locks.h and `pkg-config --cflags --libs locks` (and
# one linked with the static liblocks.a) takes a lock from the installed
# locksd.  Then, as a user other than root (nobody, when run as root), a
# build of the tree installed with cmake --install --prefix into a
# directory of that user's: locks.pc, the CMake package
# (find_package(locks), locks::locks) and the unit's ExecStart follow the
# prefix given at install time, and the uninstall target removes every
# file the install made.  Prints one "ok N - ..." or "not ok N - ..." line
# per test (TAP) and exits non-zero if any failed.
#
# usage: test_install.sh CMAKE BUILD_DIR SOURCE_DIR
#
# The environment names the configured install locations, as CMake
# knows them: INSTALL_PREFIX, INSTALL_SBINDIR, INSTALL_BINDIR,
# INSTALL_LIBDIR, INSTALL_INCLUDEDIR, INSTALL_MANDIR (all absolute),
# SYSTEMD_UNITDIR, SYSTEMD_SYSUSERSDIR and SYSTEMD_TMPFILESDIR (relative
# to the prefix, or absolute); LOCKS_RELOCATABLE_PC (ON or OFF, as
# configured); CC and PROBE_CFLAGS, the
# compiler and flags (such as sanitizers) liblocks was built with; and
# PYTHON3 and LOCKS_PYTHON_SITEDIR, the interpreter and where the Python
# package goes (empty without python3: its tests are skipped).

set -u
export LC_ALL=C
. "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || usage CMAKE BUILD_DIR SOURCE_DIR
CMAKE=$1
BUILD=$2
SRC=$3
for var in INSTALL_PREFIX INSTALL_SBINDIR INSTALL_BINDIR INSTALL_LIBDIR \
    INSTALL_INCLUDEDIR INSTALL_MANDIR SYSTEMD_UNITDIR SYSTEMD_SYSUSERSDIR \
    SYSTEMD_TMPFILESDIR LOCKS_RELOCATABLE_PC; do
	if [ -z "${!var:-}" ]; then
		echo "Bail out! $var is not set (run this through ctest)"
		exit 1
	fi
done
CC=${CC:-cc}
PROBE_CFLAGS=${PROBE_CFLAGS:-}
need_tools "$CC" pkg-config readelf groff man
# install() puts a relative directory under the prefix.
for var in SYSTEMD_UNITDIR SYSTEMD_SYSUSERSDIR SYSTEMD_TMPFILESDIR \
    LOCKS_PYTHON_SITEDIR; do
	case ${!var:-} in
	/* | '') ;;
	*) printf -v "$var" %s "$INSTALL_PREFIX/${!var}" ;;
	esac
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/locks-install.XXXXXX") || exit 1
DEST=$TMP/dest
SOCK=$TMP/locksd.sock
DPID=

trap stop_daemon_and_finish EXIT
trap 'exit 130' INT TERM

# Run an installed program with the installed library.
installed() {
	LD_LIBRARY_PATH=$DEST$INSTALL_LIBDIR "$@"
}

# pkg-config, seeing only the installed locks.pc.  A relocatable one
# finds the DESTDIR by itself; else the sysroot puts it in front.
pc() {
	local sysroot=
	[ "$LOCKS_RELOCATABLE_PC" = ON ] || sysroot=$DEST
	PKG_CONFIG_PATH=$DEST$INSTALL_LIBDIR/pkgconfig \
	    PKG_CONFIG_SYSROOT_DIR=$sysroot pkg-config "$@"
}

test_cmake_install_into_destdir() {
	DESTDIR=$DEST "$CMAKE" --install "$BUILD" --prefix "$INSTALL_PREFIX" \
	    >"$TMP/install.log" 2>&1 || fail "exit $?: $(cat "$TMP/install.log")"
}

test_files_are_in_the_gnu_places() {
	local f
	for f in "$INSTALL_SBINDIR/locksd" "$INSTALL_BINDIR/locks" \
	    "$INSTALL_LIBDIR/liblocks.so.0" "$INSTALL_LIBDIR/liblocks.so" \
	    "$INSTALL_LIBDIR/liblocks.a" "$INSTALL_INCLUDEDIR/locks.h" \
	    "$INSTALL_LIBDIR/pkgconfig/locks.pc" \
	    "$SYSTEMD_UNITDIR/locksd.service" "$SYSTEMD_UNITDIR/locksd.socket" \
	    "$SYSTEMD_SYSUSERSDIR/locksd.conf" "$SYSTEMD_TMPFILESDIR/locksd.conf" \
	    "$INSTALL_LIBDIR/cmake/locks/locksConfig.cmake" \
	    "$INSTALL_LIBDIR/cmake/locks/locksConfigVersion.cmake" \
	    "$INSTALL_LIBDIR/cmake/locks/locksTargets.cmake" \
	    "$INSTALL_MANDIR/man8/locksd.8" "$INSTALL_MANDIR/man1/locks.1" \
	    "$INSTALL_PREFIX/share/bash-completion/completions/locks"; do
		[ -f "$DEST$f" ] || fail "missing $f"
	done
	[ -x "$DEST$INSTALL_SBINDIR/locksd" ] || fail "locksd not executable"
	[ -x "$DEST$INSTALL_BINDIR/locks" ] || fail "locks not executable"
	# Nothing installed may point back into the build tree.
	for f in "$INSTALL_SBINDIR/locksd" "$INSTALL_BINDIR/locks" \
	    "$INSTALL_LIBDIR/liblocks.so.0"; do
		! readelf -d "$DEST$f" | grep -E 'R(UN)?PATH' | grep -qF "$BUILD" ||
		    fail "$f has an RPATH into the build dir"
	done
	for f in "$INSTALL_LIBDIR/pkgconfig/locks.pc" \
	    "$SYSTEMD_UNITDIR/locksd.service" "$INSTALL_INCLUDEDIR/locks.h"; do
		! grep -qF "$BUILD" "$DEST$f" || fail "$f names the build dir"
	done
	for f in "$DEST$INSTALL_LIBDIR"/cmake/locks/*.cmake; do
		! grep -qF "$BUILD" "$f" || fail "$f names the build dir"
	done
}

test_liblocks_has_its_soname() {
	local lib=$DEST$INSTALL_LIBDIR/liblocks.so.0 soname
	soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
	[ "$soname" = liblocks.so.0 ] || fail "SONAME is '$soname'"
	[ -f "$(realpath "$lib")" ] && [ "$(basename "$(realpath "$lib")")" = \
	    liblocks.so.0.1.0 ] || fail "liblocks.so.0 -> $(readlink "$lib")"
	readelf -d "$DEST$INSTALL_BINDIR/locks" | grep -q 'NEEDED.*\[liblocks.so.0\]' ||
	    fail "locks does not need liblocks.so.0"
}

test_installed_units_run_the_installed_locksd() {
	local unit=$DEST$SYSTEMD_UNITDIR/locksd.service
	grep -q "^ExecStart=$INSTALL_SBINDIR/locksd " "$unit" ||
	    fail "ExecStart: $(grep ExecStart "$unit")"
	# Otherwise the units are the ones in the tree.
	sed "s|^ExecStart=$INSTALL_SBINDIR/locksd |ExecStart=/usr/local/sbin/locksd |" \
	    "$unit" | cmp -s - "$SRC/systemd/locksd.service" ||
	    fail "locksd.service differs from the tree's"
	cmp -s "$DEST$SYSTEMD_UNITDIR/locksd.socket" "$SRC/systemd/locksd.socket" ||
	    fail "locksd.socket differs from the tree's"
	cmp -s "$DEST$SYSTEMD_TMPFILESDIR/locksd.conf" \
	    "$SRC/systemd/locksd.tmpfiles" ||
	    fail "tmpfiles.d/locksd.conf differs from the tree's"
}

test_man_pages_render_and_are_found() {
	local page out
	for page in man8/locksd.8 man1/locks.1; do
		out=$(groff -man -Tutf8 -ww -z "$DEST$INSTALL_MANDIR/$page" 2>&1)
		[ -z "$out" ] || fail "$page: $out"
	done
	MANPATH=$DEST$INSTALL_MANDIR man -w locksd.8 >/dev/null ||
	    fail "man does not find locksd(8)"
	MANPATH=$DEST$INSTALL_MANDIR man -w locks.1 >/dev/null ||
	    fail "man does not find locks(1)"
}

# The -I and -L directories in the flags $1, one a line, as -Idir or
# -Ldir, each with its ".." resolved (a relocatable locks.pc gives
# ${pcfiledir}/../../include).
flag_dirs() {
	local flag
	for flag in $1; do
		case $flag in
		-I* | -L*) echo "${flag:0:2}$(realpath -m "${flag:2}")" ;;
		esac
	done
}

# Succeed if pkg-config's flags $1 hold -I$2 and -L$3 (once resolved) and
# -llocks.
flags_point_at() {
	local dirs
	dirs=$(flag_dirs "$1")
	grep -qxF -- "-I$2" <<<"$dirs" || fail "no -I$2 in: $1"
	grep -qxF -- "-L$3" <<<"$dirs" || fail "no -L$3 in: $1"
	[[ " $1 " == *" -llocks "* ]] || fail "no -llocks: $1"
}

test_pkg_config_points_into_the_install() {
	local flags
	pc --exists locks || fail "pkg-config does not find locks"
	[ "$(pc --modversion locks)" = "$(sed -n \
	    's/^project(locks VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")" ] ||
	    fail "version $(pc --modversion locks)"
	flags=$(pc --cflags --libs locks) || fail "pkg-config failed"
	flags_point_at "$flags" "$DEST$INSTALL_INCLUDEDIR" "$DEST$INSTALL_LIBDIR"
}

start_installed_daemon() {
	"$DEST$INSTALL_SBINDIR/locksd" --socket "$SOCK" --lock-dir "$TMP/locks" \
	    2>"$TMP/locksd.log" &
	DPID=$!
	wait_until installed "$DEST$INSTALL_BINDIR/locks" --socket "$SOCK" \
	    status >/dev/null 2>&1
}

test_installed_daemon_and_cli_work() {
	local out
	out=$(installed "$DEST$INSTALL_BINDIR/locks" --socket "$SOCK" run \
	    install-cli -- sh -c 'echo $LOCKS_NAME') || fail "exit $?"
	[ "$out" = install-cli ] || fail "printed: $out"
	[ "$(installed ldd "$DEST$INSTALL_BINDIR/locks" |
	    sed -n 's/.*liblocks.so.0 => \([^ ]*\).*/\1/p')" = \
	    "$DEST$INSTALL_LIBDIR/liblocks.so.0" ] ||
	    fail "locks does not use the installed liblocks"
}

test_program_built_with_pkg_config_takes_a_lock() {
	local out
	# shellcheck disable=SC2046,SC2086
	"$CC" -Wall -Werror $PROBE_CFLAGS -o "$TMP/probe" \
	    "$SRC/tests/install_probe.c" $(pc --cflags --libs locks) ||
	    fail "does not compile"
	[ "$(installed ldd "$TMP/probe" |
	    sed -n 's/.*liblocks.so.0 => \([^ ]*\).*/\1/p')" = \
	    "$DEST$INSTALL_LIBDIR/liblocks.so.0" ] ||
	    fail "probe does not use the installed liblocks"
	out=$(installed "$TMP/probe" "$SOCK") || fail "probe failed: $out"
	[[ $out =~ ^acquired\ install-probe\ token\ [0-9]+$ ]] ||
	    fail "printed: $out"
	[ -f "$TMP/locks/install-probe" ] || fail "no lock file"
}

test_program_linked_with_liblocks_a_takes_a_lock() {
	local out
	# shellcheck disable=SC2046,SC2086
	"$CC" -Wall -Werror $PROBE_CFLAGS -o "$TMP/probe-static" \
	    "$SRC/tests/install_probe.c" $(pc --cflags locks) \
	    "$DEST$INSTALL_LIBDIR/liblocks.a" \
	    $(pkg-config --libs json-c) -lm || fail "does not link"
	! readelf -d "$TMP/probe-static" | grep -q 'liblocks' ||
	    fail "linked liblocks.so"
	out=$("$TMP/probe-static" "$SOCK") || fail "probe failed: $out"
	[[ $out =~ ^acquired\ install-probe\ token\ [0-9]+$ ]] ||
	    fail "printed: $out"
}

test_python_package_is_in_the_site_dir() {
	local f
	for f in __init__.py aio.py _conn.py _errors.py _target.py; do
		[ -f "$DEST$LOCKS_PYTHON_SITEDIR/locks/$f" ] ||
		    fail "missing $LOCKS_PYTHON_SITEDIR/locks/$f"
	done
	! ls "$DEST$LOCKS_PYTHON_SITEDIR/locks" | grep -qv '\.py$' ||
	    fail "more than the sources: $(ls "$DEST$LOCKS_PYTHON_SITEDIR/locks")"
}

# Take a lock from the installed locksd with the package in $1.
python_takes_a_lock() {
	PYTHONPATH=$1 PYTHONDONTWRITEBYTECODE=1 "$PYTHON3" -c '
import sys, locks, locks.aio
assert locks.__file__.startswith(sys.argv[1]), locks.__file__
with locks.Mutex("install-python", socket=sys.argv[2]) as m:
    print("token", m.token)
' "$1" "$SOCK"
}

test_installed_python_package_takes_a_lock() {
	local out
	out=$(python_takes_a_lock "$DEST$LOCKS_PYTHON_SITEDIR" 2>&1) ||
	    fail "failed: $out"
	[[ $out =~ ^token\ [0-9]+$ ]] || fail "printed: $out"
}

# A python3 with pip, setuptools and wheel, for an offline build without
# isolation: $PYTHON3, else Debian's (python3-pip, python3-setuptools,
# python3-wheel).
pip_python() {
	local py
	for py in "$PYTHON3" /usr/bin/python3; do
		if "$py" -c 'import setuptools, wheel' 2>/dev/null &&
		    "$py" -m pip --version >/dev/null 2>&1; then
			echo "$py"
			return 0
		fi
	done
	return 1
}

test_pip_installs_the_package_offline() {
	local out py
	py=$(pip_python) || fail "no python3 with pip, setuptools and wheel" \
	    "(apt-get install python3-pip python3-setuptools python3-wheel)"
	# A copy, so that setuptools' build/ and egg-info stay out of the tree.
	cp -r "$SRC/client/python" "$TMP/pysrc" || fail "cannot copy"
	rm -rf "$TMP/pysrc/locks/__pycache__"
	out=$("$py" -m pip install --no-build-isolation --no-index \
	    --no-deps --no-cache-dir --disable-pip-version-check --quiet \
	    --target "$TMP/pip" "$TMP/pysrc" 2>&1) || fail "pip: $out"
	[ -d "$TMP/pip"/locks-*.dist-info ] || fail "no dist-info"
	out=$(PYTHON3=$py python_takes_a_lock "$TMP/pip" 2>&1) ||
	    fail "failed: $out"
	[[ $out =~ ^token\ [0-9]+$ ]] || fail "printed: $out"
}

# The prefix install: a build of the tree by a user other than root,
# configured for /usr/local and installed with --prefix into $PFX.
USER_DIR=$TMP/user
UBUILD=$USER_DIR/build
PFX=$USER_DIR/prefix

# Run a command as that user: nobody when we are root, else ourselves.
as_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u nobody -- env HOME="$USER_DIR" "$@"
	else
		env HOME="$USER_DIR" "$@"
	fi
}

# The value of the variable $1 in the user's build's CMakeCache.txt.
ucache() {
	sed -n "s/^$1:[A-Z]*=//p" "$UBUILD/CMakeCache.txt"
}

test_user_builds_the_tree() {
	mkdir -p "$USER_DIR/src" && chmod 0755 "$TMP" || fail "mkdir"
	# The user's own copy: the tree may lie where only we can read.
	tar -C "$SRC" --exclude=./.git --exclude='./build*' \
	    --exclude='./obj-*' -cf - . | tar -C "$USER_DIR/src" -xf - ||
	    fail "cannot copy the tree"
	if [ "$(id -u)" -eq 0 ]; then
		chown -R nobody "$USER_DIR" || fail "chown nobody"
	fi
	[ "$(as_user id -u)" -ne 0 ] || fail "the user is root"
	as_user "$CMAKE" -S "$USER_DIR/src" -B "$UBUILD" -DCMAKE_C_COMPILER="$CC" \
	    -DCMAKE_INSTALL_PREFIX=/usr/local -DBUILD_TESTING=OFF \
	    -DLOCKS_BUILD_BENCH=OFF >"$USER_DIR/configure.log" 2>&1 ||
	    fail "configure: $(cat "$USER_DIR/configure.log")"
	as_user "$CMAKE" --build "$UBUILD" -j2 >"$USER_DIR/build.log" 2>&1 ||
	    fail "build: $(tail -n 30 "$USER_DIR/build.log")"
}

test_cmake_install_prefix_without_root() {
	as_user "$CMAKE" --install "$UBUILD" --prefix "$PFX" \
	    >"$USER_DIR/install.log" 2>&1 ||
	    fail "exit $?: $(cat "$USER_DIR/install.log")"
	[ -s "$UBUILD/install_manifest.txt" ] || fail "no install_manifest.txt"
}

test_prefix_install_is_all_under_the_prefix() {
	local libdir site f
	libdir=$(ucache CMAKE_INSTALL_LIBDIR)
	site=$(ucache LOCKS_PYTHON_SITEDIR)
	for f in sbin/locksd bin/locks "$libdir/liblocks.so.0" include/locks.h \
	    lib/systemd/system/locksd.service lib/systemd/system/locksd.socket \
	    lib/sysusers.d/locksd.conf lib/tmpfiles.d/locksd.conf \
	    "$libdir/cmake/locks/locksConfig.cmake" \
	    ${site:+"$site/locks/__init__.py"}; do
		[ -f "$PFX/$f" ] || fail "missing $PFX/$f"
	done
	while read -r f; do
		[[ $f == "$PFX"/* ]] || fail "installed outside the prefix: $f"
	done <"$UBUILD/install_manifest.txt"
	# Nothing installed names the prefix configured, only the one given.
	! grep -rlF /usr/local "$PFX/$libdir/pkgconfig" "$PFX/$libdir/cmake" \
	    "$PFX/lib/systemd" || fail "names /usr/local"
}

test_prefix_unit_runs_the_prefix_locksd() {
	grep -qx "ExecStart=$PFX/sbin/locksd --socket /run/locksd/locksd.sock --lock-dir /run/locksd/locks" \
	    "$PFX/lib/systemd/system/locksd.service" ||
	    fail "$(grep ExecStart "$PFX/lib/systemd/system/locksd.service")"
}

test_prefix_locks_pc_is_relocated() {
	local libdir flags
	libdir=$(ucache CMAKE_INSTALL_LIBDIR)
	flags=$(PKG_CONFIG_PATH=$PFX/$libdir/pkgconfig pkg-config \
	    --cflags --libs locks) || fail "pkg-config failed"
	flags_point_at "$flags" "$(realpath "$PFX/include")" \
	    "$(realpath "$PFX/$libdir")"
	grep -qxF 'prefix=${pcfiledir}/../..' "$PFX/$libdir/pkgconfig/locks.pc" ||
	    fail "$(grep '^prefix=' "$PFX/$libdir/pkgconfig/locks.pc")"
}

# A project of the user's own: find_package(locks), locks::locks.
write_consumer() {
	mkdir -p "$USER_DIR/consumer" &&
	    cp "$SRC/tests/install_probe.c" "$USER_DIR/consumer/" &&
	    cat >"$USER_DIR/consumer/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(consumer LANGUAGES C)
find_package(locks 0.1 REQUIRED)
add_executable(probe install_probe.c)
target_link_libraries(probe PRIVATE locks::locks)
get_target_property(inc locks::locks INTERFACE_INCLUDE_DIRECTORIES)
file(GENERATE OUTPUT found.txt CONTENT "${inc}\n$<TARGET_FILE:locks::locks>\n")
EOF
}

test_find_package_locks_builds_and_links() {
	local libdir out
	libdir=$(ucache CMAKE_INSTALL_LIBDIR)
	write_consumer || fail "cannot write the project"
	[ "$(id -u)" -ne 0 ] || chown -R nobody "$USER_DIR/consumer"
	as_user "$CMAKE" -S "$USER_DIR/consumer" -B "$USER_DIR/consumer/build" \
	    -DCMAKE_C_COMPILER="$CC" -DCMAKE_PREFIX_PATH="$PFX" \
	    >"$USER_DIR/consumer.log" 2>&1 &&
	    as_user "$CMAKE" --build "$USER_DIR/consumer/build" \
	    >>"$USER_DIR/consumer.log" 2>&1 ||
	    fail "$(cat "$USER_DIR/consumer.log")"
	out=$(cat "$USER_DIR/consumer/build/found.txt")
	[ "$out" = "$(realpath "$PFX/include")
$(realpath "$PFX/$libdir")/liblocks.so.$(ucache CMAKE_PROJECT_VERSION)" ] ||
	    fail "locks::locks is: $out"
	# Our own daemon, in our own directory (locksd checks who owns it).
	"$PFX/sbin/locksd" --socket "$TMP/prefix.sock" \
	    --lock-dir "$TMP/prefix-locks" 2>"$TMP/prefix-locksd.log" &
	wait_until env LD_LIBRARY_PATH="$PFX/$libdir" "$PFX/bin/locks" \
	    --socket "$TMP/prefix.sock" status \
	    >/dev/null 2>&1 || fail "locksd: $(cat "$TMP/prefix-locksd.log")"
	out=$("$USER_DIR/consumer/build/probe" "$TMP/prefix.sock") ||
	    fail "probe failed: $out"
	[[ $out =~ ^acquired\ install-probe\ token\ [0-9]+$ ]] ||
	    fail "printed: $out"
}

test_uninstall_removes_what_was_installed() {
	local f left
	as_user "$CMAKE" --build "$UBUILD" --target uninstall \
	    >"$USER_DIR/uninstall.log" 2>&1 ||
	    fail "exit $?: $(cat "$USER_DIR/uninstall.log")"
	while read -r f; do
		[ ! -e "$f" ] && [ ! -L "$f" ] || fail "left $f"
	done <"$UBUILD/install_manifest.txt"
	left=$(find "$PFX" ! -type d)
	[ -z "$left" ] || fail "left: $left"
}

t "cmake --install into a DESTDIR" test_cmake_install_into_destdir
t "locksd, locks, liblocks, locks.h, locks.pc, units, man pages, completion" \
    test_files_are_in_the_gnu_places
t "liblocks.so.0 has SONAME liblocks.so.0 and is liblocks.so.0.1.0" \
    test_liblocks_has_its_soname
t "the installed service runs the installed locksd" \
    test_installed_units_run_the_installed_locksd
t "the man pages render without warnings and man finds them" \
    test_man_pages_render_and_are_found
t "pkg-config --cflags --libs locks points into the install" \
    test_pkg_config_points_into_the_install
start_installed_daemon ||
    bail_no_daemon "$TMP/locksd.log" "the installed locksd did not start"
t "the installed locksd serves the installed locks CLI" \
    test_installed_daemon_and_cli_work
t "a program built with pkg-config and locks.h takes a lock" \
    test_program_built_with_pkg_config_takes_a_lock
t "a program linked with liblocks.a takes a lock" \
    test_program_linked_with_liblocks_a_takes_a_lock
if [ -n "${PYTHON3:-}" ] && [ -n "${LOCKS_PYTHON_SITEDIR:-}" ]; then
	t "the Python package is installed in $LOCKS_PYTHON_SITEDIR" \
	    test_python_package_is_in_the_site_dir
	t "the installed Python package takes a lock" \
	    test_installed_python_package_takes_a_lock
	t "pip installs client/python offline (--no-build-isolation)" \
	    test_pip_installs_the_package_offline
fi
t "as a user other than root, configure and build the tree" \
    test_user_builds_the_tree
t "cmake --install --prefix DIR, not as root" \
    test_cmake_install_prefix_without_root
t "every file is under the prefix given at install time" \
    test_prefix_install_is_all_under_the_prefix
t "the unit's ExecStart names locksd under that prefix" \
    test_prefix_unit_runs_the_prefix_locksd
t "locks.pc's paths resolve under that prefix" \
    test_prefix_locks_pc_is_relocated
t "find_package(locks) and locks::locks build, link and take a lock" \
    test_find_package_locks_builds_and_links
t "the uninstall target removes every file in install_manifest.txt" \
    test_uninstall_removes_what_was_installed
