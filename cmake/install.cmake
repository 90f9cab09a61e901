# install.cmake: where `make install` (cmake --install) and the Debian
# package (CPack, `make package`) put trialsync's files.
#
# Every destination is relative to CMAKE_INSTALL_PREFIX (/usr/local by
# default, /usr in the package), so DESTDIR and --prefix apply to all of
# them; systemd reads units, sysusers.d and tmpfiles.d from
# /usr/local/lib/... as well as /usr/lib/....
include(GNUInstallDirs)

set(TS_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "systemd system units, relative to the prefix")
set(TS_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING "sysusers.d entries, relative to the prefix")
set(TS_TMPFILES_DIR "lib/tmpfiles.d" CACHE STRING "tmpfiles.d entries, relative to the prefix")

install(TARGETS trialsyncd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS trialsync RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# deploy/trialsyncd.service names the package's path (/usr/sbin/trialsyncd);
# the installed copy names the daemon where this install puts it.  Done at
# install time, so `cmake --install --prefix P` is honoured too.
set(TS_UNIT_OUT ${CMAKE_BINARY_DIR}/install/trialsyncd.service)
install(CODE "
  file(READ \"${CMAKE_SOURCE_DIR}/deploy/trialsyncd.service\" unit)
  if(IS_ABSOLUTE \"${CMAKE_INSTALL_SBINDIR}\")
    set(sbin \"${CMAKE_INSTALL_SBINDIR}\")
  else()
    set(sbin \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\")
  endif()
  string(REPLACE \"/usr/sbin/trialsyncd\" \"\${sbin}/trialsyncd\" unit \"\${unit}\")
  file(WRITE \"${TS_UNIT_OUT}\" \"\${unit}\")
")
install(FILES ${TS_UNIT_OUT} DESTINATION ${TS_SYSTEMD_UNIT_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/deploy/trialsync.sysusers
        DESTINATION ${TS_SYSUSERS_DIR} RENAME trialsync.conf)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/trialsync.tmpfiles
        DESTINATION ${TS_TMPFILES_DIR} RENAME trialsync.conf)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/node.conf.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${CMAKE_SOURCE_DIR}/docs/operations.md ${CMAKE_SOURCE_DIR}/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
foreach(page trialsync.1 trialsyncd.8 trialsync.conf.5)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  if(EXISTS ${CMAKE_SOURCE_DIR}/man/${page})
    install(FILES ${CMAKE_SOURCE_DIR}/man/${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endif()
endforeach()

# ---- the Debian package (make package) ------------------------------------------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "trialsync")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "trialsync maintainers <trialsync@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "clinical-trial data replication node and admin tool")
set(CPACK_PACKAGE_DESCRIPTION
    "trialsyncd replicates a clinical trial's records between hospital sites and\n the CRO's hubs over mutually authenticated TLS; trialsync administers a trial\n (CA, sites, revocation) and reads, writes, verifies and exports its records.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
# dpkg-shlibdeps (dpkg-dev) derives Depends from the binaries' libraries.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/deploy/debian/postinst
    ${CMAKE_SOURCE_DIR}/deploy/debian/prerm
    ${CMAKE_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

# Bash completion, where bash-completion looks for it on demand.
install(FILES ${CMAKE_SOURCE_DIR}/deploy/bash-completion/trialsync
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
