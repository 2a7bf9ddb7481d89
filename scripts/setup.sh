#!/usr/bin/env bash
# Installs everything tess needs on a fresh Debian 12 machine (non-interactive,
# idempotent, runs as root or with sudo). Build tools and C++ libraries come
# from Debian; LibTorch comes from the pinned PyTorch wheel on PyPI; the Python
# packages after it are test-only references (never needed to train).
set -euo pipefail

TORCH_VERSION="2.15.0"          # LibTorch line (CUDA 13.x build, C++ ABI = 1)
PY_TEST_REFS=(
  "numpy==2.4.6"
  "transformers==5.23.0"
  "tokenizers==0.23.3"
  "safetensors==0.8.0"
  "sentencepiece==0.2.3"
  "tensorboard==2.21.0"
  "gguf==0.19.0"
  "langdetect==1.0.9"   # IFEval's language identifier: the reference for eval/tasks/language_id.h
  # Real clients of `tess serve` (tests/launch/serve): the official OpenAI
  # client, lm-eval's local-chat-completions, and selenium driving Chromium.
  # selenium 4.50: later versions need a certifi newer than PyPI serves here.
  "openai==3.60.0"
  "lm_eval==0.4.13"
  "tenacity==9.2.1"   # lm-eval's API models need it and lm_eval does not pull it in
  "selenium==4.50.0"
)
APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libsentencepiece-dev sentencepiece libyaml-cpp-dev libfmt-dev libspdlog-dev
  catch2 libcli11-dev nlohmann-json3-dev libgloo-dev zlib1g-dev libpcre2-dev libssl-dev
  wordnet-base fortunes-min fortunes
  libcpp-httplib-dev chromium chromium-driver
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[setup] apt-get install: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[setup] Debian packages: all present"
fi

PY=${PYTHON:-python3}
have_torch=$($PY -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [ "$have_torch" != "$TORCH_VERSION" ]; then
  echo "[setup] pip install torch==$TORCH_VERSION (LibTorch with CUDA/NCCL; large download)"
  $PY -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
else
  echo "[setup] torch $TORCH_VERSION: present"
fi
need_refs=0
for spec in "${PY_TEST_REFS[@]}"; do
  name=${spec%%==*}; want=${spec##*==}
  got=$($PY -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}' || true)
  [ "$got" = "$want" ] || need_refs=1
done
if [ "$need_refs" = 1 ]; then
  echo "[setup] pip install test references: ${PY_TEST_REFS[*]}"
  $PY -m pip install --quiet --disable-pip-version-check "${PY_TEST_REFS[@]}"
else
  echo "[setup] Python test references: present"
fi

abi=$($PY -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
if [ "$abi" != "1" ]; then
  echo "[setup] error: this torch wheel uses the pre-C++11 ABI; Debian's C++ libraries need the C++11 ABI" >&2
  exit 1
fi
echo "[setup] done"
