#!/usr/bin/env bash
# Sets up otalab on a fresh Debian/Ubuntu machine: system packages (UHD's Python API, libiio), a virtualenv in .venv
# with the CPU build of torch, and the project with its test and radio extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1 && [ -z "${OTALAB_SKIP_APT:-}" ]; then
  need=()
  # dataset-fashion-mnist: Fashion-MNIST in /usr/share/datasets/fashion-mnist, so that FEEL (otalab demo, otalab feel)
  # and its tests have a data set on a machine without MNIST (learning/feel/data.py looks there).
  for pkg in python3-venv python3-uhd libiio0 libiio-utils dataset-fashion-mnist; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  dpkg -s dataset-fashion-mnist >/dev/null 2>&1 && echo "setup: Fashion-MNIST from Debian's dataset-fashion-mnist" \
    "(/usr/share/datasets/fashion-mnist)"
else
  echo "setup: no apt-get (or OTALAB_SKIP_APT set): install UHD's Python API, libiio and a data set yourself" \
    "(FEEL needs MNIST or Fashion-MNIST: otalab data fetch mnist)"
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, so that the project's plain torch requirement pulls no multi-GB CUDA build: torch==2.13.0 (a local wheel
# in pip's find-links wins when there is one), from PyTorch's CPU wheel index where it is reachable, else from the
# default index. Set OTALAB_TORCH (e.g. OTALAB_TORCH=torch) to choose another torch, such as a CUDA build on a GPU.
CPU_INDEX="https://download.pytorch.org/whl/cpu"
if [ -n "${OTALAB_TORCH:-}" ]; then
  .venv/bin/python -m pip install -q "$OTALAB_TORCH"
elif .venv/bin/python - "$CPU_INDEX" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5).close()
PY
then
  echo "setup: torch from PyTorch's CPU wheel index ($CPU_INDEX)"
  .venv/bin/python -m pip install -q torch==2.13.0 --index-url "$CPU_INDEX" --extra-index-url https://pypi.org/simple
else
  echo "setup: PyTorch's CPU wheel index is not reachable: torch from the default index"
  .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e ".[pluto,heif,test]"
.venv/bin/python -c "import torch; print('setup: torch', torch.__version__, '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU build)')"
