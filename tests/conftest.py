"""Shared pytest fixtures: seeded RNG, the shared data directory, and clean skips for hardware."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: the offline data sets of these machines (see ../shared/data/README.md); tests must not download anything
SHARED_DATA = Path(os.environ.get("OTALAB_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, fixed-seed generator per test."""
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data directory; tests that need a data set skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline data directory {SHARED_DATA} not present (set OTALAB_DATA_DIR)")
    return SHARED_DATA
