"""setup.sh makes Debian's python3-uhd importable in the project's virtualenv (and only it: the venv's numpy wins).

Runs the setup's UHD step (``./setup.sh --link-uhd-only VENV``) on a fresh venv of the system Python; the rest of the
set-up (pip installs) is replaced by a .pth file pointing at this test interpreter's packages. Skips unless this is
Debian/Ubuntu with python3-uhd installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYS_PY = "/usr/bin/python3"


def _system_has_uhd() -> bool:
    if not (os.path.exists("/etc/debian_version") and os.path.exists(SYS_PY) and shutil.which("dpkg")):
        return False
    return subprocess.run(["dpkg", "-s", "python3-uhd"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _system_has_uhd(), reason="needs Debian/Ubuntu with python3-uhd installed")


def test_setup_links_uhd_into_the_venv_and_probe_reports_no_device(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([SYS_PY, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    vpy = venv / "bin" / "python"
    ver = subprocess.run([str(vpy), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout.strip()
    if ver != "%d.%d" % sys.version_info[:2]:
        pytest.skip(f"system Python {ver} differs from this interpreter's; cannot borrow its packages")
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # stand-in for the pip installs: this interpreter's packages (numpy, typer, ...) and the checkout
    Path(site, "deps.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{ROOT}\n")
    out = subprocess.run(["bash", str(ROOT / "setup.sh"), "--link-uhd-only", str(venv)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    probe = subprocess.run([str(vpy), "-c", "import numpy, uhd; print(numpy.__file__); print(uhd.__file__)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    numpy_file, uhd_file = probe.stdout.split()[-2:]
    assert "/usr/lib/python3/dist-packages" not in numpy_file      # the venv's numpy wins over Debian's
    assert os.path.realpath(uhd_file).startswith("/usr/lib/python3/dist-packages/uhd")
    cli = subprocess.run([str(vpy), "-c", "import sys; from lab.cli import main; sys.exit(main())", "radio", "probe", "--config",
                          str(ROOT / "hw_configs" / "usrp-b210.yaml")], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = cli.stdout + cli.stderr
    assert cli.returncode != 0
    assert "No devices found" in text and "cannot import" not in text
