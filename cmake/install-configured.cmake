# cmake/install-configured.cmake - runs at install time (see install.cmake):
# writes the configuration, rule and policy files under SYSCONF/parcelrisk and
# the systemd unit, with the absolute paths of the install prefix.

function(pr_full out rel)
  if(IS_ABSOLUTE "${rel}")
    set(full "${rel}")
  else()
    set(full "${CMAKE_INSTALL_PREFIX}/${rel}")
  endif()
  set(${out} "${full}" PARENT_SCOPE)
endfunction()

pr_full(PR_BINDIR "${PR_REL_BINDIR}")
pr_full(PR_DATADIR "${PR_REL_DATADIR}")
pr_full(PR_DOCDIR "${PR_REL_DOCDIR}")
pr_full(PR_UNITDIR "${PR_REL_UNITDIR}")
# GNUInstallDirs: /etc for the /usr prefix, PREFIX/etc otherwise.
if(IS_ABSOLUTE "${PR_REL_SYSCONFDIR}")
  set(PR_SYSCONFDIR "${PR_REL_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND PR_REL_SYSCONFDIR STREQUAL "etc")
  set(PR_SYSCONFDIR "/etc")
else()
  set(PR_SYSCONFDIR "${CMAKE_INSTALL_PREFIX}/${PR_REL_SYSCONFDIR}")
endif()
set(PR_CONFDIR "${PR_SYSCONFDIR}/parcelrisk")

# Writes content to path (under DESTDIR); an existing different file is kept
# and the new one goes to path.new.
function(pr_install_text path content)
  set(dest "$ENV{DESTDIR}${path}")
  get_filename_component(dir "${dest}" DIRECTORY)
  file(MAKE_DIRECTORY "${dir}")
  if(EXISTS "${dest}")
    file(READ "${dest}" old)
    if(old STREQUAL content)
      message(STATUS "Up-to-date: ${dest}")
      return()
    endif()
    file(WRITE "${dest}.new" "${content}")
    message(STATUS "Kept: ${dest} (edited?); the new one is ${dest}.new")
    return()
  endif()
  file(WRITE "${dest}" "${content}")
  message(STATUS "Installing: ${dest}")
endfunction()

file(READ "${PR_SOURCE_DIR}/ops/config/parcelrisk.yaml.in" template)
string(CONFIGURE "${template}" config @ONLY)
pr_install_text("${PR_CONFDIR}/parcelrisk.yaml" "${config}")
file(MAKE_DIRECTORY "$ENV{DESTDIR}${PR_DATADIR}/parcelrisk/defaults")
file(WRITE "$ENV{DESTDIR}${PR_DATADIR}/parcelrisk/defaults/parcelrisk.yaml" "${config}")
foreach(name rules.yaml policy-us.yaml)
  file(READ "${PR_SOURCE_DIR}/schemas/${name}" content)
  pr_install_text("${PR_CONFDIR}/${name}" "${content}")
endforeach()

file(READ "${PR_SOURCE_DIR}/ops/systemd/parcelrisk.service.in" template)
string(CONFIGURE "${template}" unit @ONLY)
# The unit is ours, not the operator's (changes go in a drop-in,
# `systemctl edit parcelrisk`): always the new one.
file(MAKE_DIRECTORY "$ENV{DESTDIR}${PR_UNITDIR}")
file(WRITE "$ENV{DESTDIR}${PR_UNITDIR}/parcelrisk.service" "${unit}")
message(STATUS "Installing: $ENV{DESTDIR}${PR_UNITDIR}/parcelrisk.service")
