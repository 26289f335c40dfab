"""Thin wrapper: ``python bench/sync.py [--quick] [--json PATH]`` == ``otalab bench sync ...`` (see lab/bench_sync.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.bench_sync import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
