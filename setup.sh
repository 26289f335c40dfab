#!/usr/bin/env bash
# Sets up otalab on a fresh Debian/Ubuntu machine: system packages (UHD's Python API, libiio), a virtualenv in .venv
# with the CPU build of torch, and the project with its test and radio extras. Safe to run again.
#   ./setup.sh --link-uhd-only VENV   only makes Debian's python3-uhd importable in the virtualenv VENV (see below)
set -euo pipefail
cd "$(dirname "$0")"

# UHD's Python API comes from Debian's python3-uhd (a compiled module for the system Python). The venv sees that one
# package, and only it: a directory inside the venv holds a link to /usr/lib/python3/dist-packages/uhd and a .pth file
# puts that directory on sys.path. The rest of dist-packages (Debian's numpy, ...) stays invisible, so the venv's own
# numpy always wins. The link is made only when the venv runs the same Python minor version as the system's (the
# module is compiled for it).
link_system_uhd() {
  local venv="$1" sys_py=/usr/bin/python3 uhd_dir site ver_sys ver_venv
  [ -x "$sys_py" ] || { echo "setup: no $sys_py: skipping UHD" >&2; return 0; }
  uhd_dir=$("$sys_py" -c 'import importlib.util as u, os; s = u.find_spec("uhd"); print(os.path.dirname(s.origin) if s else "")' 2>/dev/null || true)
  [ -n "$uhd_dir" ] || { echo "setup: python3-uhd is not installed: USRPs unavailable (sudo apt install python3-uhd)" >&2; return 0; }
  ver_sys=$("$sys_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  ver_venv=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$ver_sys" != "$ver_venv" ]; then
    echo "setup: $venv runs Python $ver_venv but python3-uhd is built for $ver_sys: recreate the venv with" \
         "PYTHON=$sys_py ./setup.sh to use USRPs" >&2
    return 0
  fi
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/_otalab_system_uhd"
  ln -sfn "$uhd_dir" "$site/_otalab_system_uhd/uhd"
  echo "$site/_otalab_system_uhd" > "$site/otalab-system-uhd.pth"
}
if [ "${1:-}" = "--link-uhd-only" ]; then
  link_system_uhd "${2:?usage: ./setup.sh --link-uhd-only VENV}"
  exit 0
fi

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
# The system Python by default where python3-uhd is installed (its compiled module needs that Python's version).
DEFAULT_PY=python3; [ -x /usr/bin/python3 ] && dpkg -s python3-uhd >/dev/null 2>&1 && DEFAULT_PY=/usr/bin/python3
PY="${PYTHON:-$DEFAULT_PY}"
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
link_system_uhd .venv
.venv/bin/python -c "import torch; print('setup: torch', torch.__version__, '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU build)')"
