#!/usr/bin/env bash
# Checks tess on a GPU machine that has no internet: builds tess and the CUDA
# tests against the machine's own CUDA PyTorch (its LibTorch) and the Debian 12
# C++ libraries carried in by scripts/gpu_bundle.sh, runs `ctest -L cuda`, then
# one `tess bench train` case on the GPU in bf16 at a ~1B-parameter shape.
#
#   scripts/gpu_check.sh [OPTIONS] OUT_DIR [-- EXTRA_CMAKE_ARGS...]
#
#   --configure-only   stop after CMake's configure step (the rest is reported
#                      as skipped): checks the bundle and the prefix anywhere
#   --bundle DIR       the .deb folder made by scripts/gpu_bundle.sh (default
#                      gpu_bundle/ in the repository)
#   --prefix DIR       where the .debs are unpacked (default
#                      $TMPDIR/tess-gpu-check/prefix; never /)
#   --build-dir DIR    CMake build folder (default $TMPDIR/tess-gpu-check/build)
#   --jobs N           parallel compile jobs (default: nproc)
#   --bench-case CASE  tess bench train --case (default 1b/adaptation/bf16)
#   --budget SECONDS   the whole run's time limit (default 540); each phase
#                      also has its own limit
#   -h, --help         this text
#
# Needs: python3 (or $PYTHON) with torch 2.x built with the C++11 ABI, cmake,
# ninja, a C++ compiler; nvcc for a CUDA torch. Writes OUT_DIR/gpu_check.log
# (everything), OUT_DIR/gpu_check.json (each phase: status ok/failed/skipped,
# seconds, reason; ctest counts; the bench report; torch version; GPU name)
# and OUT_DIR/bench.json. Build and prefix stay outside OUT_DIR so that OUT_DIR
# is small enough to copy back. Exits non-zero if any phase failed. Without a
# visible GPU it still configures, builds and runs the CUDA tests (which then
# skip) and says that nothing ran on a GPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
START=$(date +%s)

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }

PY="${PYTHON:-python3}"
BUNDLE="$ROOT/gpu_bundle"
SCRATCH="${TMPDIR:-/tmp}/tess-gpu-check"
PREFIX="$SCRATCH/prefix"
BUILD_DIR="$SCRATCH/build"
JOBS="$(nproc)"
BENCH_CASE="1b/adaptation/bf16"
BUDGET=540
CONFIGURE_ONLY=0
OUT=""
CMAKE_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --configure-only) CONFIGURE_ONLY=1 ;;
    --bundle) BUNDLE="$2"; shift ;;
    --prefix) PREFIX="$2"; shift ;;
    --build-dir) BUILD_DIR="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    --bench-case) BENCH_CASE="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    --) shift; CMAKE_EXTRA=("$@"); break ;;
    -*) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$OUT" ] || { echo "gpu_check: one OUT_DIR only (see --help)" >&2; exit 2; }; OUT="$1" ;;
  esac
  shift
done
[ -n "$OUT" ] || { usage >&2; exit 2; }

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PREFIX="$(realpath -m "$PREFIX")"
BUILD_DIR="$(realpath -m "$BUILD_DIR")"
BUNDLE="$(realpath -m "$BUNDLE")"
LOG="$OUT/gpu_check.log"
REPORT="$OUT/gpu_check.json"
STATE="$OUT/.gpu_check"   # per-phase facts the report is assembled from
rm -rf "$STATE" "$REPORT" "$OUT/bench.json"
mkdir -p "$STATE"
: > "$LOG"
: > "$STATE/phases.tsv"
DEADLINE=$((START + BUDGET))
# Debian's multiarch library folder: the bundle is amd64 only (preflight checks).
LIBDIR="$PREFIX/usr/lib/x86_64-linux-gnu"

# pkg-config reads only the prefix's .pc files and moves their /usr paths into
# the prefix (PKG_CONFIG_SYSROOT_DIR); exported for configure and for any
# re-run of cmake that the build triggers.
export PKG_CONFIG_LIBDIR="$LIBDIR/pkgconfig:$PREFIX/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$PREFIX"
unset PKG_CONFIG_PATH
# The prefix's shared libraries, for tess and test_cuda only (not for cmake,
# the compiler or Python, which keep the machine's libz and libssl).
RUN_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Progress goes to the console and the log; commands' output to the log only.
say() { echo "[gpu_check] $*" | tee -a "$LOG"; }

# --- phases -----------------------------------------------------------------
# Each phase is a function run with its output in the log. It returns non-zero
# on failure with REASON set; SKIP_REASON makes it report "skipped" instead.
# `tmo CMD` runs CMD under what is left of the phase's time limit.
REASON=""
SKIP_REASON=""
FAILED=""
PHASE_END=0

tmo() {
  local left=$((PHASE_END - $(date +%s)))
  [ "$left" -gt 0 ] || left=1
  local rc=0
  timeout -k 10 "$left" "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then REASON="timed out (phase limit reached) in: $*"; fi
  return "$rc"
}

# run_phase NAME LIMIT FUNCTION [why-skipped]
run_phase() {
  local name=$1 cap=$2 fn=$3 skip=${4:-}
  local t0 rc=0 left status
  t0=$(date +%s)
  left=$((DEADLINE - t0 - 5))
  REASON=""
  SKIP_REASON=""
  if [ -n "$skip" ]; then
    printf '%s\tskipped\t0\t%s\n' "$name" "$skip" >> "$STATE/phases.tsv"
    say "$name: skipped ($skip)"
    return 0
  fi
  if [ "$left" -lt 10 ]; then
    REASON="the time budget (--budget $BUDGET s) ran out before this phase"
    printf '%s\tfailed\t0\t%s\n' "$name" "$REASON" >> "$STATE/phases.tsv"
    FAILED="$FAILED $name"
    say "$name: FAILED ($REASON)"
    return 0
  fi
  [ "$cap" -le "$left" ] || cap=$left
  PHASE_END=$((t0 + cap))
  say "$name: running (limit ${cap}s)"
  local first_line
  first_line=$(($(wc -l < "$LOG") + 1))
  echo "===== phase $name ($(date -u +%H:%M:%S), limit ${cap}s) =====" >> "$LOG"
  "$fn" >> "$LOG" 2>&1 || rc=$?
  local secs=$(($(date +%s) - t0))
  local tail_of_phase
  tail_of_phase=$(tail -n "+$first_line" "$LOG" | tail -n 40)
  if [ "$rc" -ne 0 ]; then
    status=failed
    [ -n "$REASON" ] || REASON="exit status $rc"
    FAILED="$FAILED $name"
  elif [ -n "$SKIP_REASON" ]; then
    status=skipped
    REASON="$SKIP_REASON"
  else
    status=ok
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "${REASON//$'\n'/ }" >> "$STATE/phases.tsv"
  if [ "$status" = failed ]; then
    say "$name: FAILED after ${secs}s: $REASON"
    say "---- the phase's last 40 lines of log ----"
    local l
    while IFS= read -r l; do echo "  | $l"; done <<< "$tail_of_phase"
  else
    say "$name: $status (${secs}s)${REASON:+: $REASON}"
  fi
}

phase_preflight() {
  echo "repository: $ROOT"
  echo "bundle: $BUNDLE  prefix: $PREFIX  build: $BUILD_DIR  jobs: $JOBS"
  if [ "$(uname -m)" != x86_64 ]; then
    REASON="the bundle holds amd64 packages; this machine is $(uname -m)"; return 1
  fi
  if [ ! -f "$BUNDLE/SHA256SUMS" ]; then
    REASON="no bundle at $BUNDLE: run scripts/gpu_bundle.sh on the dev machine and carry gpu_bundle/ along"; return 1
  fi
  (cd "$BUNDLE" && sha256sum -c --quiet SHA256SUMS) || { REASON="the bundle's .deb files do not match its SHA256SUMS"; return 1; }
  cat "$BUNDLE/PACKAGES.txt"

  # Tools the build needs. nvcc is not found on PATH on some images.
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
  local t
  for t in cmake ninja timeout sha256sum; do
    command -v "$t" >/dev/null || { REASON="$t not found"; return 1; }
  done
  CXX="${CXX:-$(command -v g++ || command -v c++ || true)}"
  [ -n "$CXX" ] || { REASON="no C++ compiler (g++ or c++) found"; return 1; }
  export CXX
  cmake --version | head -1; ninja --version; "$CXX" --version | head -1
  if command -v nvcc >/dev/null; then nvcc --version | tail -2; else echo "nvcc: not found"; fi
  if command -v ccache >/dev/null; then echo "ccache: $(command -v ccache) (CMake uses it)"; else echo "ccache: not found"; fi

  # Debian's libraries need at least the glibc and libstdc++ they were built
  # against (libc and libstdc++ are never bundled).
  local need_glibc need_glibcxx have_glibc have_glibcxx libstdcxx
  need_glibc=$(awk '$1=="GLIBC"{print $2}' "$BUNDLE/REQUIRES")
  need_glibcxx=$(awk '$1=="GLIBCXX"{print $2}' "$BUNDLE/REQUIRES")
  have_glibc=$({ getconf GNU_LIBC_VERSION 2>/dev/null || true; } | awk '{print $2}')
  libstdcxx=$("$CXX" -print-file-name=libstdc++.so.6)
  have_glibcxx=$({ grep -ao 'GLIBCXX_[0-9][0-9.]*[0-9]' "$libstdcxx" || true; } | sed 's/GLIBCXX_//' | sort -V | tail -1)
  echo "glibc $have_glibc (bundle needs $need_glibc); libstdc++ $libstdcxx: GLIBCXX $have_glibcxx (bundle needs $need_glibcxx)"
  if [ -z "$have_glibc" ]; then
    echo "warning: getconf GNU_LIBC_VERSION gave nothing (not glibc?); not checked"
  elif [ "$(printf '%s\n' "$need_glibc" "$have_glibc" | sort -V | head -1)" != "$need_glibc" ]; then
    REASON="glibc $have_glibc is older than the $need_glibc Debian 12's libraries need"; return 1
  fi
  if [ -z "$have_glibcxx" ]; then
    echo "warning: could not read the GLIBCXX versions of $libstdcxx; not checked"
  elif [ "$(printf '%s\n' "$need_glibcxx" "$have_glibcxx" | sort -V | head -1)" != "$need_glibcxx" ]; then
    REASON="libstdc++ (GLIBCXX $have_glibcxx) is older than the $need_glibcxx Debian 12's libraries need"; return 1
  fi

  # The PyTorch whose LibTorch tess builds against, and whether it sees a GPU.
  command -v "$PY" >/dev/null || { REASON="$PY not found (set PYTHON)"; return 1; }
  tmo "$PY" - "$STATE/torch.json" <<'EOF' || { [ -n "$REASON" ] || REASON="$PY cannot import torch"; return 1; }
import json, sys
import torch
info = {
    "python": sys.executable,
    "torch_version": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "cmake_prefix_path": torch.utils.cmake_prefix_path,
    "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
    "cuda_available": torch.cuda.is_available(),
    "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
}
if info["cuda_available"]:
    p = torch.cuda.get_device_properties(0)
    info["gpu_name"] = p.name
    info["gpu_capability"] = f"{p.major}.{p.minor}"
    info["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info, indent=1))
EOF
  TORCH_PREFIX=$(torch_field cmake_prefix_path)
  PY_EXE=$(torch_field python)
  HAVE_GPU=$(torch_field cuda_available)
  if command -v nvidia-smi >/dev/null; then
    tmo nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
      > "$STATE/nvidia-smi.txt" 2>&1 || true
    cat "$STATE/nvidia-smi.txt"
  else
    echo "nvidia-smi: not found"
  fi
  if [ "$(torch_field cxx11_abi)" != True ]; then
    REASON="torch $(torch_field torch_version) uses the pre-C++11 ABI; Debian's C++ libraries need the C++11 ABI (torch >= 2.7 wheels have it)"
    return 1
  fi
}

torch_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$STATE/torch.json" "$1"; }

phase_unpack() {
  # rm -rf only a folder this script made (marked), never an arbitrary one.
  case "$PREFIX" in
    /|/usr|/usr/*|/opt|/etc|/lib*|/bin|/sbin|/var|/home|/root) REASON="refusing prefix $PREFIX"; return 1 ;;
  esac
  if [ -e "$PREFIX" ] && [ ! -f "$PREFIX/.tess-gpu-prefix" ]; then
    REASON="$PREFIX exists and was not made by gpu_check.sh: choose another --prefix"; return 1
  fi
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  touch "$PREFIX/.tess-gpu-prefix"
  local deb
  for deb in "$BUNDLE"/*.deb; do
    echo "unpack $(basename "$deb")"
    if command -v dpkg-deb >/dev/null && [ "${TESS_UNPACK:-}" != python ]; then
      tmo dpkg-deb -x "$deb" "$PREFIX" || { REASON="dpkg-deb -x $deb failed"; return 1; }
    else
      # No dpkg here (not Debian): a .deb is an ar archive whose data.tar.*
      # member holds the files; Python reads both formats.
      tmo "$PY" - "$deb" "$PREFIX" <<'EOF' || { REASON="unpacking $deb with Python failed"; return 1; }
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", "not an ar archive"
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(body)) as t:
            for m in t.getmembers():  # paths stay inside the prefix
                assert not m.name.startswith("/") and ".." not in m.name.split("/"), m.name
            t.extractall(sys.argv[2])
        break
    pos += 60 + size + (size & 1)
else:
    sys.exit("no data.tar member")
EOF
    fi
  done
  # Debian 12 merges /lib into /usr/lib on the machine, but some packages
  # still ship files in /lib (zlib1g): merge them here too, so that one
  # library folder holds everything.
  local d
  for d in lib bin sbin; do
    if [ -d "$PREFIX/$d" ] && [ ! -L "$PREFIX/$d" ]; then
      mkdir -p "$PREFIX/usr/$d"
      cp -a "$PREFIX/$d/." "$PREFIX/usr/$d/"
      rm -rf "${PREFIX:?}/$d"
      ln -s "usr/$d" "$PREFIX/$d"
      echo "merged $PREFIX/$d into $PREFIX/usr/$d"
    fi
  done
  # A few links point at absolute paths (zlib1g-dev's libz.so -> /lib/...):
  # aim them at the prefix's copy, not at whatever the machine has.
  local link target
  while IFS= read -r link; do
    target=$(readlink "$link")
    ln -sfn "$PREFIX$target" "$link"
    echo "relinked $link -> $PREFIX$target"
  done < <(find "$PREFIX" -type l -lname '/*')
  local broken
  broken=$(find "$PREFIX/usr/lib" -xtype l)
  echo "dangling links (packages left out of the bundle on purpose):"; echo "${broken:-  none}"
  # CMake's pkg_check_modules needs a pkg-config: the bundled pkgconf, with its
  # own library found only for itself (LD_LIBRARY_PATH stays unset for cmake
  # and the compiler, which use the machine's libz and libssl).
  mkdir -p "$PREFIX/tess-bin"
  cat > "$PREFIX/tess-bin/pkg-config" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$PREFIX/usr/bin/pkgconf" "\$@"
EOF
  chmod +x "$PREFIX/tess-bin/pkg-config"
  "$PREFIX/tess-bin/pkg-config" --cflags --libs sentencepiece libpcre2-8 \
    || { REASON="the bundled pkg-config cannot read the prefix's sentencepiece/libpcre2-8 .pc files"; return 1; }
  du -sh "$PREFIX"
}

# CMakeCache.txt entries that must point into the prefix: one per bundled
# library tess finds (a match on the machine's own copy is what this check is
# there to rule out). An entry another CMake version names differently is
# only reported.
PREFIX_ENTRIES=(fmt_DIR spdlog_DIR yaml-cpp_DIR CLI11_DIR nlohmann_json_DIR Catch2_DIR TESS_GLOO_INCLUDE_DIR
  pkgcfg_lib_SENTENCEPIECE_sentencepiece pkgcfg_lib_SENTENCEPIECE_sentencepiece_train pkgcfg_lib_PCRE2_pcre2-8
  ZLIB_INCLUDE_DIR ZLIB_LIBRARY_RELEASE OPENSSL_INCLUDE_DIR OPENSSL_CRYPTO_LIBRARY)

phase_configure() {
  mkdir -p "$BUILD_DIR"
  # Forget what an earlier configure found (objects are kept, ccache or not).
  rm -f "$BUILD_DIR/CMakeCache.txt"
  # $LIBDIR/cmake as a prefix finds the configs in lib/x86_64-linux-gnu/cmake
  # where CMake does not know Debian's multiarch folder (non-Debian images);
  # CMAKE_LIBRARY_PATH does the same for find_library. Debian's OpenSSL keeps
  # opensslconf.h in include/x86_64-linux-gnu, which GCC searches by itself
  # only under /usr on Debian: every compile gets the prefix's copy.
  tmo cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_COMPILER="$CXX" \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$LIBDIR/cmake" \
      -DCMAKE_LIBRARY_PATH="$LIBDIR" \
      -DCMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES="$PREFIX/usr/include/x86_64-linux-gnu" \
      -DPKG_CONFIG_EXECUTABLE="$PREFIX/tess-bin/pkg-config" \
      -DPython3_EXECUTABLE="$PY_EXE" \
      "${CMAKE_EXTRA[@]}" || { [ -n "$REASON" ] || REASON="cmake configure failed"; return 1; }
  local e v bad=""
  echo "where CMake found the bundled libraries:"
  for e in "${PREFIX_ENTRIES[@]}"; do
    v=$({ grep -m1 "^$e:" "$BUILD_DIR/CMakeCache.txt" || true; } | cut -d= -f2-)
    printf '  %-45s %s\n' "$e" "${v:-<not in the cache: not checked>}"
    case "$v" in "$PREFIX"/*|"") ;; *) bad="$bad $e" ;; esac
  done
  printf '%s\n' "${PREFIX_ENTRIES[@]}" > "$STATE/cache_entries.txt"
  grep -E "^($(IFS='|'; echo "${PREFIX_ENTRIES[*]}")):" "$BUILD_DIR/CMakeCache.txt" > "$STATE/cache_found.txt" || true
  if [ -n "$bad" ]; then REASON="not from the prefix:$bad"; return 1; fi
}

phase_build() {
  # Only what the checks run: the CLI and the CUDA tests (test_cuda's POST_BUILD
  # step lists its test cases by running it, found through its RUNPATH).
  tmo cmake --build "$BUILD_DIR" --target tess test_cuda -j "$JOBS" \
    || { [ -n "$REASON" ] || REASON="the build failed (see the log)"; return 1; }
}

# Counts the outcome lines of ctest's output into passed/failed/skipped.
count_ctest() {
  awk '/^ *[0-9]+\/[0-9]+ Test +#[0-9]+:/ {
         if ($0 ~ /\*\*\*Skipped| Skipped /) s++; else if ($0 ~ / Passed /) p++; else f++ }
       END { printf "%d %d %d\n", p, f, s }' "$1"
}

phase_test() {
  # Only the cuda-labelled entries: the test executables that were not built
  # appear as unlabelled *_NOT_BUILT entries, which -L cuda leaves out. A
  # hung case (NCCL) times out alone and is counted as failed.
  local rc=0
  # shellcheck disable=SC2030  # the prefix's libraries for ctest's children only
  (export LD_LIBRARY_PATH="$RUN_LIBRARY_PATH"; cd "$BUILD_DIR" &&
     tmo ctest -L cuda --output-on-failure --no-tests=error --timeout 120) > "$STATE/ctest.txt" 2>&1 || rc=$?
  cat "$STATE/ctest.txt"
  read -r passed failed skipped < <(count_ctest "$STATE/ctest.txt")
  printf '{"passed": %d, "failed": %d, "skipped": %d}\n' "$passed" "$failed" "$skipped" > "$STATE/ctest.json"
  echo "ctest -L cuda: $passed passed, $failed failed, $skipped skipped (exit $rc)"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    REASON="ctest timed out: $passed passed, $failed failed, $skipped skipped before that"; return 1
  fi
  if [ $((passed + failed + skipped)) -eq 0 ]; then REASON="ctest ran no cuda test (exit $rc)"; return 1; fi
  if [ "$rc" -ne 0 ] || [ "$failed" -gt 0 ]; then
    REASON="$failed of $((passed + failed + skipped)) cuda tests failed"; return 1
  fi
  if [ "$HAVE_GPU" = True ] && [ "$passed" -eq 0 ]; then
    REASON="torch sees a GPU but every cuda test skipped (LibTorch in tess saw none?)"; return 1
  fi
  if [ "$HAVE_GPU" != True ]; then SKIP_REASON="no CUDA device: all $skipped cuda tests skipped, none ran on a GPU"; fi
}

phase_bench() {
  if [ "$HAVE_GPU" != True ]; then SKIP_REASON="no CUDA device"; return 0; fi
  # The table goes to stderr, the JSON to stdout and bench.json.
  # shellcheck disable=SC2030,SC2031  # for tess only
  (export LD_LIBRARY_PATH="$RUN_LIBRARY_PATH"
     tmo "$BUILD_DIR/launch/tess" bench train --device cuda --case "$BENCH_CASE" --json -o "$OUT/bench.json") \
    || { [ -n "$REASON" ] || REASON="tess bench train --case $BENCH_CASE failed"; return 1; }
  "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/bench.json" \
    || { REASON="bench.json is not JSON"; return 1; }
}

# --- report -----------------------------------------------------------------
write_report() {
  "$PY" - "$STATE" "$REPORT" "$OUT" "$LOG" "$BENCH_CASE" "$CONFIGURE_ONLY" "$PREFIX" "$BUILD_DIR" <<'EOF' || return 1
import json, os, sys
state, report, out, log, case, configure_only, prefix, build = sys.argv[1:]
def load(name):
    p = os.path.join(state, name)
    if not os.path.exists(p):
        return None
    try:
        return json.load(open(p))
    except ValueError:
        return None
phases = []
for line in open(os.path.join(state, "phases.tsv")):
    name, status, secs, reason = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
    phases.append({"name": name, "status": status, "seconds": int(secs), "reason": reason or None})
torch = load("torch.json") or {}
smi = None
p = os.path.join(state, "nvidia-smi.txt")
if os.path.exists(p):
    smi = open(p).read().strip() or None
gpu = torch.get("gpu_name") or (smi.split(",")[0].strip() if smi and torch.get("cuda_available") else None)
bench = None
if os.path.exists(os.path.join(out, "bench.json")):
    try:
        bench = json.load(open(os.path.join(out, "bench.json")))
    except ValueError:
        bench = {"error": "bench.json is not JSON"}
found = {}
p = os.path.join(state, "cache_found.txt")
if os.path.exists(p):
    for line in open(p):
        k, _, v = line.rstrip("\n").partition("=")
        found[k.split(":")[0]] = v
ctest = load("ctest.json") or {}
bench_ok = any(ph["name"] == "bench" and ph["status"] == "ok" for ph in phases)
ran_on_gpu = bool(torch.get("cuda_available")) and (ctest.get("passed", 0) + ctest.get("failed", 0) > 0 or bench_ok)
r = {
    "ok": all(ph["status"] != "failed" for ph in phases),
    "ran_on_gpu": ran_on_gpu,
    "configure_only": configure_only == "1",
    "phases": phases,
    "torch_version": torch.get("torch_version"),
    "torch_cuda": torch.get("torch_cuda"),
    "cuda_available": torch.get("cuda_available"),
    "gpu_name": gpu,
    "nvidia_smi": smi,
    "torch": torch or None,
    "ctest": ctest or None,
    "bench_case": case,
    "bench": bench,
    "prefix": prefix,
    "build_dir": build,
    "found_in_prefix": found or None,
    "log": log,
}
json.dump(r, open(report, "w"), indent=1)
EOF
}

summary() {
  local torch="?" gpu=""
  if [ -f "$STATE/torch.json" ]; then
    torch=$(torch_field torch_version 2>/dev/null || echo "?")
    gpu=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("gpu_name") or "")' "$STATE/torch.json" 2>/dev/null || true)
  fi
  say "================ summary ================"
  say "torch $torch; GPU: ${gpu:-none visible to torch}"
  local name status secs reason
  while IFS=$'\t' read -r name status secs reason; do
    say "$(printf '  %-10s %-8s %4ss  %s' "$name" "$status" "$secs" "$reason")"
  done < "$STATE/phases.tsv"
  if [ -f "$STATE/ctest.json" ]; then say "  ctest -L cuda: $(cat "$STATE/ctest.json")"; fi
  if [ -f "$OUT/bench.json" ]; then
    say "  bench $BENCH_CASE: $("$PY" -c '
import json,sys
c = json.load(open(sys.argv[1]))["train"]["cases"][0]
print("%.2fB parameters, %.0f tokens/s, step %.3f s, MFU %.3f"
      % (c["model"]["parameters"] / 1e9, c["tokens_per_s"], c["step_s"], c["mfu"]))
' "$OUT/bench.json" 2>/dev/null || echo "see bench.json")"
  fi
  if [ "$CONFIGURE_ONLY" = 1 ]; then
    say "CONFIGURE ONLY: nothing was built and nothing ran on a GPU."
  elif ! grep -q '"cuda_available": true' "$STATE/torch.json" 2>/dev/null; then
    say "NO GPU: torch sees no CUDA device, so NOTHING RAN ON A GPU (the cuda tests skipped, the bench did not run)."
  fi
  say "log: $LOG"
  say "report: $REPORT"
  if [ -n "$FAILED" ]; then say "FAILED:$FAILED"; else say "no phase failed"; fi
}

finish() {
  local rc=$?
  # An error in this script itself (not in a phase) still leaves a report.
  if [ "$rc" -ne 0 ] && [ -z "$FAILED" ]; then
    printf 'script\tfailed\t0\tgpu_check.sh stopped with exit status %s (see the log)\n' "$rc" >> "$STATE/phases.tsv"
    FAILED=" script"
  fi
  write_report || say "could not write $REPORT"
  summary
  [ -z "$FAILED" ] || exit 1
}
trap finish EXIT

# --- run ----------------------------------------------------------------------
say "tess $(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo '(no git)') on $(hostname), $(nproc) cores, budget ${BUDGET}s"
HAVE_GPU=False
TORCH_PREFIX=""
PY_EXE=""
CXX="${CXX:-}"
after_configure=""
[ "$CONFIGURE_ONLY" = 0 ] || after_configure="--configure-only"

run_phase preflight 90 phase_preflight
blocked=${FAILED:+"the preflight failed"}
run_phase unpack 60 phase_unpack "$blocked"
blocked=${FAILED:+"an earlier phase failed:$FAILED"}
run_phase configure 150 phase_configure "$blocked"
blocked=${FAILED:+"an earlier phase failed:$FAILED"}
run_phase build 330 phase_build "${blocked:-$after_configure}"
blocked=${FAILED:+"an earlier phase failed:$FAILED"}
run_phase test 150 phase_test "${blocked:-$after_configure}"
# The bench needs only the build: a failed cuda test does not stop it.
blocked=""
case "$FAILED" in *preflight*|*unpack*|*configure*|*build*) blocked="an earlier phase failed:$FAILED" ;; esac
run_phase bench 180 phase_bench "${blocked:-$after_configure}"
