"""`otalab node` on the UHD test double (tests only): ``python -m tests.radio.uhd_node NODE-ARGS...``.

Installs the double (:mod:`tests.radio.uhd_double`, wall-clock mode: its device time follows the host's monotonic
clock and ``recv`` waits for its samples; TX cabled to RX with no delay, no other signal) as the ``uhd`` module, then
runs the production entry point ``lab.cli.main(["node", *NODE-ARGS])`` unchanged: the node a lab user starts with
``otalab node -c hw_configs/usrp-b210.yaml``, with a USRP that needs no hardware.
"""

from __future__ import annotations

import sys

import numpy as np

from tests.radio.uhd_double import make_uhd


def main(argv: list[str]) -> int:
    uhd, dev, _ = make_uhd(wallclock=True)
    dev.rx_source = lambda t: np.zeros(t.size, np.complex64)
    dev.max_chunk = 5000                 # one recv per node block (the double's per-recv cost is Python)
    sys.modules["uhd"] = uhd             # what radio.drivers.usrp.import_uhd() finds
    from lab.cli import main as otalab   # noqa: PLC0415  (after the double is in place)

    return otalab(["node", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
