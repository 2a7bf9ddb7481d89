#!/usr/bin/env bash
# Downloads the Debian 12 C++ libraries tess builds against into one folder
# (default gpu_bundle/ in the repository root, git-ignored), for
# scripts/gpu_check.sh to unpack into a private prefix on a machine that has a
# GPU and a CUDA PyTorch but no internet and possibly no Debian.
#
# Run it on a Debian 12 (bookworm, amd64) machine with access to a Debian
# mirror. It installs nothing: `apt-get download` only fetches the .deb files.
#
#   scripts/gpu_bundle.sh [DIR]
#
# The bundle must travel with the working tree to the GPU machine (the device
# tool carries at most 64 MiB in all), hence the size limit checked below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/gpu_bundle}"
MAX_MIB=60

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

# The libraries of scripts/setup.sh's APT_PACKAGES that the C++ build compiles
# or links against, with the dependencies that compiling and linking tess
# needs, and nothing else (apt-cache depends, resolved by hand):
#  - each -dev package with the runtime library its .so link points at;
#  - libspdlog-dev also depends on libfmt-dev and catch2, both listed anyway;
#  - libgloo-dev: tess only includes gloo's headers (c10d's Gloo backend header
#    needs them) and never links libgloo (LibTorch carries its own gloo), so its
#    libgloo0 / libhiredis-dev / libibverbs-dev dependencies (which pull in
#    libnl and the ibverbs providers) are left out;
#  - libpcre2-dev: tess links only libpcre2-8 (data/CMakeLists.txt), so its
#    16/32-bit and POSIX runtime packages are left out;
#  - zlib1g: the runtime zlib that zlib1g-dev's libz.so points at;
#  - pkgconf (+ pkgconf-bin, libpkgconf3): CMake's pkg_check_modules needs a
#    pkg-config; gpu_check.sh uses this one only where the machine has none;
#  - libcpp-httplib-dev (+ libcpp-httplib0.11): `tess serve`; its pkg-config
#    file requires brotli's (libbrotli-dev) and its .so links libbrotli1
#    (openssl and zlib are listed already).
# libc6 / libstdc++6 / libgcc-s1 are never bundled: the machine's own are used.
PACKAGES=(
  libsentencepiece-dev libsentencepiece0
  libyaml-cpp-dev libyaml-cpp0.7
  libfmt-dev libfmt9
  libspdlog-dev libspdlog1.10
  catch2
  libcli11-dev
  nlohmann-json3-dev
  libgloo-dev
  zlib1g-dev zlib1g
  libpcre2-dev libpcre2-8-0
  libssl-dev libssl3
  pkgconf pkgconf-bin libpkgconf3
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1
)

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "[gpu_bundle] error: needs apt-get and dpkg (run it on the Debian 12 dev machine)" >&2
  exit 1
fi
# The bundle is unpacked next to Debian 12's ABI (glibc 2.36, GCC 12's
# libstdc++) wherever it goes; a bundle from another release would differ.
# shellcheck source=/dev/null
. /etc/os-release
if [ "${ID:-}" != "debian" ] || [ "${VERSION_ID:-}" != "12" ]; then
  echo "[gpu_bundle] error: expected Debian 12 (found ${PRETTY_NAME:-unknown})" >&2
  exit 1
fi
if [ "$(dpkg --print-architecture)" != "amd64" ]; then
  echo "[gpu_bundle] error: expected amd64 (found $(dpkg --print-architecture))" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# A fresh folder each time: a stale .deb of another version would be unpacked too.
rm -rf "$DIR"
mkdir -p "$DIR"
cd "$DIR"

download() {
  # As root, apt warns that its _apt sandbox user cannot write here; harmless.
  apt-get download -q "${PACKAGES[@]}" 2>&1 | grep -v "unsandboxed as root" || true
  local p
  for p in "${PACKAGES[@]}"; do
    compgen -G "${p}_*.deb" >/dev/null || return 1
  done
}
if ! download; then
  echo "[gpu_bundle] some packages did not download; apt-get update, then again"
  $SUDO apt-get update -qq
  rm -f ./*.deb
  if ! download; then
    echo "[gpu_bundle] error: could not download every package of: ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

# What was downloaded, for the report and for gpu_check.sh to verify.
{
  echo "# scripts/gpu_bundle.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), ${PRETTY_NAME}"
  for f in *.deb; do
    dpkg-deb -f "$f" Package Version Architecture | sed 's/^[^:]*: //' | paste -sd' '
  done
} > PACKAGES.txt
sha256sum ./*.deb > SHA256SUMS

# The newest glibc and libstdc++ symbol versions the bundled binaries need:
# the GPU machine's own must be at least these (gpu_check.sh checks them), as
# libc and libstdc++ are never bundled.
tmp=$(mktemp -d)
for f in *.deb; do dpkg-deb -x "$f" "$tmp"; done
newest() {  # newest() PREFIX: the highest PREFIX_x.y version any bundled ELF file needs
  # (objdump fails on the odd non-ELF match; what it read from the others counts)
  { find "$tmp" -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec objdump -T {} + 2>/dev/null || true; } |
    grep -o "${1}_[0-9][0-9.]*" | sed "s/${1}_//" | sort -V | tail -1
}
glibc=$(newest GLIBC)
glibcxx=$(newest GLIBCXX)
rm -rf "$tmp"
printf 'GLIBC %s\nGLIBCXX %s\n' "${glibc:-0}" "${glibcxx:-0}" > REQUIRES

bytes=$(du -sb . | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "[gpu_bundle] $DIR: $(find . -name '*.deb' | wc -l) packages, $bytes bytes (~${mib} MiB), needs glibc >= ${glibc:-any}, libstdc++ GLIBCXX >= ${glibcxx:-any}"
tail -n +2 PACKAGES.txt | sed 's/^/  /'
if [ "$bytes" -gt $((MAX_MIB * 1048576)) ]; then
  echo "[gpu_bundle] error: the bundle is over ${MAX_MIB} MiB (the working tree sent to the GPU machine is limited to 64 MiB)" >&2
  exit 1
fi
