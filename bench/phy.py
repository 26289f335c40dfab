"""Thin wrapper: ``python bench/phy.py [--quick] [--json PATH]`` == ``otalab bench phy ...`` (see lab/bench_phy.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.bench_phy import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
