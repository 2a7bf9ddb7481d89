# Conventions shared by every tess target: warnings, include roots, the
# precompiled torch header and the dependency shims.

set(TESS_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wnon-virtual-dtor)

# The torch precompiled header is built once, here, and reused by every target.
add_library(tess_pch OBJECT "${CMAKE_SOURCE_DIR}/cmake/pch.cpp")
target_link_libraries(tess_pch PUBLIC ${TORCH_LIBRARIES} fmt::fmt spdlog::spdlog)
target_include_directories(tess_pch SYSTEM BEFORE PUBLIC "${TESS_SHIM_INCLUDE_DIR}")
target_compile_options(tess_pch PRIVATE ${TESS_WARNINGS})
set(TESS_DEFINITIONS TESS_SOURCE_DIR="${CMAKE_SOURCE_DIR}" TESS_VERSION="${PROJECT_VERSION}" $<$<BOOL:${TESS_WITH_CUDA}>:TESS_WITH_CUDA=1>)
target_compile_definitions(tess_pch PUBLIC ${TESS_DEFINITIONS})
target_precompile_headers(tess_pch PRIVATE
  <torch/torch.h> <vector> <string> <memory> <optional> <functional>
  <unordered_map> <map> <filesystem> <fmt/format.h> <spdlog/spdlog.h>)

# tess_setup_target(<target>): apply the project conventions.
function(tess_setup_target target)
  target_include_directories(${target} SYSTEM BEFORE PUBLIC "${TESS_SHIM_INCLUDE_DIR}")
  target_include_directories(${target} PUBLIC "${CMAKE_SOURCE_DIR}")
  target_compile_options(${target} PRIVATE ${TESS_WARNINGS})
  target_compile_definitions(${target} PUBLIC ${TESS_DEFINITIONS})
  target_precompile_headers(${target} REUSE_FROM tess_pch)
  if(TESS_TORCH_LINK_OPTIONS)
    target_link_options(${target} PUBLIC "${TESS_TORCH_LINK_OPTIONS}")
  endif()
endfunction()

# tess_add_library(<name> <sources...>): one library per top-level folder.
function(tess_add_library name)
  add_library(${name} STATIC ${ARGN})
  tess_setup_target(${name})
  target_link_libraries(${name} PUBLIC ${TORCH_LIBRARIES} fmt::fmt spdlog::spdlog)
endfunction()
