"""Thin wrapper: ``python bench/feel.py [--devices 10,100,1000] [--json PATH]`` == ``otalab bench feel ...``
(see lab/bench_feel.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.bench_feel import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
