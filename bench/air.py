"""Thin wrapper: ``python bench/air.py [--quick] [--json PATH]`` == ``otalab bench air ...`` (see lab/bench_air.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.bench_air import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
