"""Shared pytest fixtures: seeded RNG, the data the learning tests need (found offline or made here), clean skips for
hardware.

Data, never downloaded:

* ``feel_data``: MNIST when the FEEL loader finds it (``OTALAB_DATA_DIR``, ``../shared/data``, torchvision's cache),
  else Fashion-MNIST (``./setup.sh`` installs Debian's ``dataset-fashion-mnist``); tests read ``.name`` and pick
  their accuracy threshold per data set.
* ``cifar_data``: the offline CIFAR-10 when :func:`learning.jscc.data.find_data_dir` finds it (``.real`` is True),
  else a directory holding a stand-in ``cifar10.npz`` of 32x32 tiles of scikit-image's bundled photos
  (:func:`make_cifar_standin`). CIFAR-10 is not installable from Debian, so a fresh clone tests the same properties on
  the stand-in; numeric anchors measured on CIFAR-10 itself run only where ``.real``.
* ``shared_data``: a data directory for tests that only pass ``--data-dir``: ``../shared/data`` (or
  ``OTALAB_DATA_DIR``) where it exists, else the stand-in directory. It never skips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: the offline data sets of these machines (see ../shared/data/README.md); tests must not download anything
SHARED_DATA = Path(os.environ.get("OTALAB_DATA_DIR", REPO.parent / "shared" / "data"))
#: scikit-image photos (bundled with the package) and the downscaling factors the CIFAR stand-in tiles them at
STANDIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
STANDIN_FACTORS = (3, 4)
#: tiles flatter than this (per-image standard deviation of all pixel values, grey levels) are left out: CIFAR-10's
#: images each show an object, and 99 % of its test images have a standard deviation above 23.9 (measured on test
#: images 0-999 of ../shared/data/cifar10.npz: percentiles 1/5/50 % = 23.9/31.1/53.6), while flat sky and background
#: tiles of the photos go down to 14
STANDIN_MIN_STD = 24.0


@dataclass(frozen=True)
class FeelData:
    """The FEEL data set the tests use: ``name`` ("mnist" or "fashion-mnist") found in ``dir`` (pass as data_dir)."""

    dir: Path
    name: str
    source: str


@dataclass(frozen=True)
class CifarData:
    """A directory where :func:`learning.jscc.data.load_cifar10` finds images; ``real``: it is CIFAR-10 itself."""

    dir: Path
    real: bool


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, fixed-seed generator per test."""
    return np.random.default_rng(1234)


def make_cifar_standin() -> np.ndarray:
    """A deterministic stand-in for CIFAR-10's test images: uint8 [N, 32, 32, 3] (HWC, RGB), N = 108.

    Each photo of :data:`STANDIN_PHOTOS` is box-downscaled by each factor of :data:`STANDIN_FACTORS` (so that a 32x32
    tile holds a whole object part, as CIFAR's downscaled photos do, rather than a smooth patch of a full-resolution
    photo) and cut into non-overlapping 32x32 tiles; tiles flatter than :data:`STANDIN_MIN_STD` are dropped and the
    rest shuffled with a fixed seed so that any prefix mixes
    the photos.
    """
    from PIL import Image

    from learning.jscc.data import load_sample_photo

    tiles = []
    for name in STANDIN_PHOTOS:
        photo = Image.fromarray(load_sample_photo(name, multiple=1))
        for factor in STANDIN_FACTORS:
            small = np.asarray(photo.reduce(factor))
            rows, cols = small.shape[0] // 32, small.shape[1] // 32
            tiles += [small[32 * r:32 * r + 32, 32 * c:32 * c + 32] for r in range(rows) for c in range(cols)]
    x = np.stack(tiles).astype(np.uint8)
    x = x[x.reshape(len(x), -1).std(axis=1) >= STANDIN_MIN_STD]
    return np.ascontiguousarray(x[np.random.default_rng(0).permutation(len(x))])


@pytest.fixture(scope="session")
def cifar_standin_dir(tmp_path_factory) -> Path:
    """A directory with ``cifar10.npz`` holding the stand-in (x_train = x_test = :func:`make_cifar_standin`)."""
    d = tmp_path_factory.mktemp("cifar_standin")
    x = make_cifar_standin()
    np.savez(d / "cifar10.npz", x_train=x, x_test=x)
    return d


@pytest.fixture(scope="session")
def cifar_data(request) -> CifarData:
    """CIFAR-10 where it is found offline, else the stand-in (see module docstring)."""
    from learning.jscc.data import DataNotFoundError, find_data_dir

    try:
        return CifarData(find_data_dir(None)[0], real=True)
    except DataNotFoundError:
        return CifarData(request.getfixturevalue("cifar_standin_dir"), real=False)


@pytest.fixture(scope="session")
def feel_data() -> FeelData:
    """MNIST when found, else Fashion-MNIST; skips (naming what to install) only when neither is on this machine."""
    from learning.feel.data import load_first_available

    try:
        data, _ = load_first_available()
    except FileNotFoundError as exc:
        pytest.skip(f"no MNIST or Fashion-MNIST: run ./setup.sh (installs Debian's dataset-fashion-mnist), "
                    f"`otalab data fetch mnist` or set OTALAB_DATA_DIR ({exc})")
    source = Path(data.source)
    return FeelData(source.parent if source.suffix == ".npz" else source, data.name, data.source)


@pytest.fixture(scope="session")
def shared_data(request) -> Path:
    """The offline data directory where it exists, else the CIFAR stand-in directory (FEEL's loader still finds
    Debian's Fashion-MNIST from there); never skips."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    return request.getfixturevalue("cifar_standin_dir")
