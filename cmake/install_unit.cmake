# Run by cmake --install (install(SCRIPT) in CMakeLists.txt): install
# locksd.service with ExecStart naming locksd under the prefix of this
# install, which cmake --install --prefix may have changed since
# configure.  LOCKS_UNIT_SOURCE, LOCKS_UNITDIR and LOCKS_SBINDIR come
# from the install(CODE) just before it; the file goes in
# install_manifest.txt like any other.

# The directory DIR names under this install's prefix, in VAR.
function(locks_install_path var dir)
	if(IS_ABSOLUTE "${dir}")
		set(${var} "${dir}" PARENT_SCOPE)
	else()
		set(${var} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
	endif()
endfunction()

locks_install_path(locks_sbindir "${LOCKS_SBINDIR}")
locks_install_path(locks_unitdir "${LOCKS_UNITDIR}")
file(READ "${LOCKS_UNIT_SOURCE}" locks_unit)
string(REPLACE "/usr/local/sbin/locksd" "${locks_sbindir}/locksd"
	locks_unit "${locks_unit}")
set(locks_unit_dest "$ENV{DESTDIR}${locks_unitdir}/locksd.service")
message(STATUS "Installing: ${locks_unit_dest}")
file(MAKE_DIRECTORY "$ENV{DESTDIR}${locks_unitdir}")
file(WRITE "${locks_unit_dest}" "${locks_unit}")
list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${locks_unit_dest}")
