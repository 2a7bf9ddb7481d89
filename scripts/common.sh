# Shared by the entry-point scripts: where the build lives and how it is configured.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${TESS_BUILD_DIR:-$ROOT/build}"
BUILD_TYPE="${TESS_BUILD_TYPE:-Release}"
JOBS="${TESS_JOBS:-$(nproc)}"

tess_configure_and_build() {
  local prefix
  prefix=$(${PYTHON:-python3} -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
      -DCMAKE_PREFIX_PATH="$prefix" "$@"
  fi
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

# With `build` = 1: set-up and build first (their output goes to stderr).
# Prints the tess binary to run: $TESS when set, else the build's.
tess_binary() {
  if [ "$1" = 1 ]; then
    "$ROOT/scripts/setup.sh" >&2 || return 1  # errexit does not reach into $(...)
    tess_configure_and_build >&2 || return 1
  fi
  echo "${TESS:-$BUILD_DIR/launch/tess}"
}
