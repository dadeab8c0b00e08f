# Run by `cmake --install` (systemd/CMakeLists.txt sets the NW_ and CMAKE_INSTALL_ dirs
# as configured): writes the unit with the absolute paths GNUInstallDirs gives for the
# prefix now in force, installs the example config, and the live config only once, so
# that an operator's edits are never overwritten.
include(GNUInstallDirs)   # recomputes CMAKE_INSTALL_FULL_* from CMAKE_INSTALL_PREFIX

set(unitdir "${NW_SYSTEMD_UNITDIR}")
if(NOT IS_ABSOLUTE "${unitdir}")
  set(unitdir "${CMAKE_INSTALL_PREFIX}/${unitdir}")
endif()
# One file per destination: installs into several prefixes may run at once (the tests
# do), and one writing the file while another installs it installed an empty unit,
# which systemd takes for a masked one.
string(MD5 dest "$ENV{DESTDIR}${unitdir}")
configure_file("${NW_UNIT_IN}" "${NW_BINARY_DIR}/install/${dest}/newswired.service" @ONLY)
file(INSTALL "${NW_BINARY_DIR}/install/${dest}/newswired.service" DESTINATION "${unitdir}")

set(etc "${CMAKE_INSTALL_FULL_SYSCONFDIR}/newswire")
file(INSTALL "${NW_CONFIG}" DESTINATION "${etc}" RENAME newswired.cfg.example)
if(EXISTS "$ENV{DESTDIR}${etc}/newswired.cfg")
  message(STATUS "Kept: $ENV{DESTDIR}${etc}/newswired.cfg (never overwritten)")
else()
  file(INSTALL "${NW_CONFIG}" DESTINATION "${etc}" RENAME newswired.cfg)
endif()
