# Every external dependency of tess is found here and nowhere else.

# --- LibTorch (from the PyTorch wheel) --------------------------------------
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  # We compile no CUDA kernels of our own; naming the architectures skips
  # Torch's GPU auto-detection, which fails (slowly) on GPU-less machines.
  set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0")
endif()
find_package(Python3 COMPONENTS Interpreter REQUIRED)
find_package(Torch REQUIRED)
get_filename_component(TESS_TORCH_LIB_DIR "${TORCH_LIBRARY}" DIRECTORY)

set(TESS_WITH_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(TESS_WITH_CUDA ON)
endif()
message(STATUS "tess: LibTorch ${Torch_VERSION} from ${TESS_TORCH_LIB_DIR}, CUDA/NCCL code: ${TESS_WITH_CUDA}")

# The wheel's CUDA libraries (cuDNN, NCCL, cuBLAS, ...) sit in site-packages/nvidia/*/lib
# and are found by libtorch_cuda's own RPATH at run time; the linker needs them
# too, ahead of any older copy in the CUDA toolkit (e.g. its libnccl).
set(TESS_TORCH_LINK_OPTIONS "")
set(TESS_NCCL_INCLUDE_DIR "")
if(TESS_WITH_CUDA)
  file(GLOB _nv_lib_dirs LIST_DIRECTORIES true "${TESS_TORCH_LIB_DIR}/../../nvidia/*/lib")
  if(_nv_lib_dirs)
    list(JOIN _nv_lib_dirs ":" _nv_path)
    set(TESS_TORCH_LINK_OPTIONS "LINKER:-rpath-link,${_nv_path}")
  endif()
  if(EXISTS "${TESS_TORCH_LIB_DIR}/../../nvidia/nccl/include/nccl.h")
    get_filename_component(TESS_NCCL_INCLUDE_DIR "${TESS_TORCH_LIB_DIR}/../../nvidia/nccl/include" ABSOLUTE)
  endif()
endif()

# --- Debian's C++ libraries ---------------------------------------------------
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED)  # libcrypto: SHA-256 of hashes and manifests

# Torch's include directory carries its own fmt 12 headers, which would shadow
# Debian's fmt 9 (the one libspdlog is built against). A directory of links to
# the system copies, searched first, keeps fmt/spdlog on one version.
set(TESS_SHIM_INCLUDE_DIR "${CMAKE_BINARY_DIR}/shim-include")
file(MAKE_DIRECTORY "${TESS_SHIM_INCLUDE_DIR}")
foreach(_lib fmt spdlog)
  get_target_property(_inc ${_lib}::${_lib} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT _inc)
    set(_inc /usr/include)
  endif()
  list(GET _inc 0 _inc)
  file(CREATE_LINK "${_inc}/${_lib}" "${TESS_SHIM_INCLUDE_DIR}/${_lib}" SYMBOLIC)
endforeach()

# c10d's Gloo backend header needs gloo's headers, which the wheel does not ship.
find_path(TESS_GLOO_INCLUDE_DIR gloo/algorithm.h)
if(NOT TESS_GLOO_INCLUDE_DIR)
  message(FATAL_ERROR "gloo headers not found: install Debian's libgloo-dev (scripts/setup.sh does)")
endif()
