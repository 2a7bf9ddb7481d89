# ccache when present; the sloppiness settings let it cache TUs that use the
# precompiled torch header.
find_program(TESS_CCACHE ccache)
if(TESS_CCACHE)
  set(_launcher ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      "CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}"
      ${TESS_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_launcher})
  message(STATUS "tess: compiling through ccache (${TESS_CCACHE})")
endif()
