# The uninstall target (cmake -DLOCKS_MANIFEST=FILE -P uninstall.cmake):
# remove every file the install listed in FILE, install_manifest.txt,
# with DESTDIR as it was then.  Directories stay: others may share them.
if(NOT EXISTS "${LOCKS_MANIFEST}")
	message(FATAL_ERROR "${LOCKS_MANIFEST} is missing: nothing was "
		"installed from this build dir (cmake --install first)")
endif()
file(STRINGS "${LOCKS_MANIFEST}" locks_files)
set(locks_failed "")
foreach(f IN LISTS locks_files)
	if(IS_SYMLINK "${f}" OR EXISTS "${f}")
		message(STATUS "Removing: ${f}")
		file(REMOVE "${f}")
		if(IS_SYMLINK "${f}" OR EXISTS "${f}")
			list(APPEND locks_failed "${f}")
		endif()
	else()
		message(STATUS "Not there: ${f}")
	endif()
endforeach()
if(locks_failed)
	message(FATAL_ERROR "could not remove: ${locks_failed}")
endif()
