"""Thin wrapper: ``python bench/jscc.py [--images N] [--json PATH]`` == ``otalab bench jscc ...`` (see lab/bench_jscc.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.bench_jscc import main

if __name__ == "__main__":
    main(sys.argv[1:])
