#!/usr/bin/env bash
# Sets up otalab on a fresh Debian/Ubuntu machine: system packages (UHD's Python API, libiio), a virtualenv in .venv
# with the CPU build of torch, and the project with its test and radio extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1 && [ -z "${OTALAB_SKIP_APT:-}" ]; then
  need=()
  for pkg in python3-venv python3-uhd libiio0 libiio-utils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build first, so that no multi-GB CUDA build is pulled in by the project's plain torch requirement.
# Set OTALAB_TORCH (e.g. OTALAB_TORCH=torch) to choose another torch, such as a CUDA build on a GPU machine.
.venv/bin/python -m pip install -q "${OTALAB_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[pluto,heif,test]"
