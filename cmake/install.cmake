# cmake/install.cmake - `cmake --install build [--prefix DIR]`: the binary,
# the schemas, the rule and policy files, an example configuration that runs
# as written, the systemd unit, the alert rules and dashboard, the docs.
#
# Layout (GNUInstallDirs; PREFIX is the install prefix, /usr/local by default):
#   PREFIX/bin/parcelrisk
#   SYSCONF/parcelrisk/parcelrisk.yaml     the configuration (written at install
#   SYSCONF/parcelrisk/rules.yaml          time with the paths of this prefix);
#   SYSCONF/parcelrisk/policy-us.yaml      what an operator edits and reloads
#   PREFIX/share/parcelrisk/schemas/*.avsc                 the Avro contract
#   PREFIX/share/parcelrisk/defaults/{rules,policy-us,parcelrisk}.yaml
#                                          the shipped files, untouched, to diff
#                                          an edited copy against after an upgrade
#   PREFIX/share/parcelrisk/prometheus/alerts.yml, grafana/parcelrisk.json
#   PREFIX/share/doc/parcelrisk/           README, RUNBOOK, contract, DOMAIN
#   PREFIX/lib/systemd/system/parcelrisk.service
# SYSCONF is PREFIX/etc (/usr/local/etc), or /etc when PREFIX is /usr, as
# GNUInstallDirs has it. An existing file under SYSCONF/parcelrisk is never
# overwritten (an upgrade keeps the operator's edits): the new one is written
# beside it as NAME.new, and the install says so.
include(GNUInstallDirs)

set(PR_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "systemd unit directory, relative to the install prefix or absolute")

install(TARGETS parcelrisk RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES schemas/declaration.avsc schemas/decision.avsc schemas/deadletter.avsc
        DESTINATION ${CMAKE_INSTALL_DATADIR}/parcelrisk/schemas)
install(FILES schemas/rules.yaml schemas/policy-us.yaml
        DESTINATION ${CMAKE_INSTALL_DATADIR}/parcelrisk/defaults)
install(FILES ops/prometheus/alerts.yml DESTINATION ${CMAKE_INSTALL_DATADIR}/parcelrisk/prometheus)
install(FILES ops/grafana/parcelrisk.json DESTINATION ${CMAKE_INSTALL_DATADIR}/parcelrisk/grafana)
install(FILES README.md ops/RUNBOOK.md docs/contract.md docs/DOMAIN.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The configuration and the unit name absolute paths of the prefix given to
# `cmake --install --prefix`, known only at install time: written by a script
# that runs then.
install(CODE "
  set(PR_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
  set(PR_REL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(PR_REL_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(PR_REL_DATADIR \"${CMAKE_INSTALL_DATADIR}\")
  set(PR_REL_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  set(PR_REL_UNITDIR \"${PR_SYSTEMD_UNITDIR}\")
  include(\"${CMAKE_SOURCE_DIR}/cmake/install-configured.cmake\")
")
