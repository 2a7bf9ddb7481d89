#!/usr/bin/env bash
# Fresh machine -> all tests passing: set-up, configure, build, ctest.
# Extra arguments go to ctest (e.g. scripts/test.sh -L unit).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$ROOT/scripts/setup.sh"
tess_configure_and_build
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" "$@"
