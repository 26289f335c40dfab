"""Image-classification data sets for federated edge learning: MNIST, Fashion-MNIST and CIFAR-10, loaded offline.

Lookup order (the first directory that holds the data set in a known layout wins):

1. ``data_dir`` argument (``otalab feel --data-dir``),
2. the environment variable ``OTALAB_DATA_DIR``,
3. ``../shared/data`` beside the checkout,
4. the torchvision layout under ``~/.cache/torchvision``,
5. Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), Fashion-MNIST only.

Layouts understood in each directory:

* ``<name>.npz`` with ``x_train, y_train, x_test, y_test`` (uint8; ``mnist.npz``, ``fashion-mnist.npz`` or
  ``fashion_mnist.npz``, ``cifar10.npz``);
* torchvision's ``MNIST/raw`` / ``FashionMNIST/raw`` IDX files (``.gz`` or not) and ``cifar-10-batches-py``;
* the IDX files directly in the directory (Debian's Fashion-MNIST package).

Nothing is ever downloaded: a missing data set raises :class:`FileNotFoundError` naming every place searched and what
to do.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from learning.safeio import restricted_pickle_load

#: data set name -> accepted .npz file names
NPZ_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist.npz",),
    "fashion-mnist": ("fashion-mnist.npz", "fashion_mnist.npz"),
    "cifar10": ("cifar10.npz", "cifar-10.npz"),
}
#: data set name -> torchvision sub-directory holding the raw IDX files
TORCHVISION_IDX_DIRS: dict[str, str] = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TORCHVISION_CACHE = Path.home() / ".cache" / "torchvision"
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
#: per-data-set normalisation applied by :meth:`ImageDataset.tensors` (mean, std on [0, 1] pixels)
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


@dataclass(frozen=True)
class ImageDataset:
    """A train/test split as uint8 arrays.

    ``x_train``: uint8[N, H, W] (grey) or uint8[N, H, W, 3] (RGB, HWC); ``y_train``: int64[N]; same for test.
    ``source``: where it was loaded from.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def features(self, split: str = "train") -> np.ndarray:
        """Normalised float32 features, NCHW: float32[N, C, H, W] with per-channel (x/255 - mean)/std."""
        x = self.x_train if split == "train" else self.x_test
        x = x.astype(np.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        mean, std = NORMALISATION.get(self.name, ((0.0,), (1.0,)))
        mean = np.asarray(mean, np.float32)[None, :, None, None]
        std = np.asarray(std, np.float32)[None, :, None, None]
        return (x - mean) / std


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The directories searched, in order (see module docstring)."""
    dirs: list[Path] = []
    if data_dir:
        dirs.append(Path(data_dir))
    if os.environ.get("OTALAB_DATA_DIR"):
        dirs.append(Path(os.environ["OTALAB_DATA_DIR"]))
    dirs.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    dirs.append(TORCHVISION_CACHE)
    return dirs


def _read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array of the shape its header gives."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4]!r}, expected 00 00 08 nd)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def _idx_in(directory: Path) -> list[Path] | None:
    found = []
    for stem in _IDX_FILES:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found


def _from_idx(name: str, files: list[Path]) -> ImageDataset:
    xtr, ytr, xte, yte = (_read_idx(f) for f in files)
    return ImageDataset(name, xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), str(files[0].parent))


def _from_npz(name: str, path: Path) -> ImageDataset:
    with np.load(path) as z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}; expected x_train, y_train, x_test, y_test")
        return ImageDataset(name, z["x_train"], z["y_train"].astype(np.int64), z["x_test"],
                            z["y_test"].astype(np.int64), str(path))


def _from_cifar_batches(directory: Path) -> ImageDataset:
    def load(names):
        xs, ys = [], []
        for n in names:
            batch = restricted_pickle_load(directory / n)  # numpy arrays and plain data only: no code runs
            if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
                raise ValueError(f"{directory / n}: expected a CIFAR-10 batch (a dict with b'data' and b'labels'), "
                                 f"got {type(batch).__name__}")
            xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch[b"labels"], np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = load([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = load(["test_batch"])
    return ImageDataset("cifar10", xtr, ytr, xte, yte, str(directory))


def _names_dataset(directory: Path, name: str) -> bool:
    """Bare IDX files carry no data-set name (MNIST and Fashion-MNIST share file names): trust the folder name."""
    folder = directory.name.lower()
    return "fashion" in folder if name == "fashion-mnist" else ("mnist" in folder and "fashion" not in folder)


def _find_in(name: str, directory: Path) -> ImageDataset | None:
    for npz in NPZ_NAMES[name]:
        if (directory / npz).is_file():
            return _from_npz(name, directory / npz)
    if name in TORCHVISION_IDX_DIRS:
        for sub in (directory / TORCHVISION_IDX_DIRS[name], directory):
            files = _idx_in(sub)
            if files and (sub != directory or _names_dataset(directory, name)):
                return _from_idx(name, files)
    if name == "cifar10" and (directory / "cifar-10-batches-py" / "data_batch_1").is_file():
        return _from_cifar_batches(directory / "cifar-10-batches-py")
    return None


def load_dataset(name: str, data_dir: str | Path | None = None) -> ImageDataset:
    """Load ``name`` ("mnist", "fashion-mnist" or "cifar10") from the first directory that holds it.

    Raises ValueError for an unknown name and FileNotFoundError (listing every place searched) when absent.
    The result is cached per (name, directories searched); treat its arrays as read-only.
    """
    return _load_cached(name, tuple(str(d) for d in candidate_dirs(data_dir)))


@lru_cache(maxsize=4)
def _load_cached(name: str, dirs: tuple[str, ...]) -> ImageDataset:
    if name not in NPZ_NAMES:
        raise ValueError(f"dataset {name!r}: unknown; expected one of {', '.join(NPZ_NAMES)}")
    searched = [Path(d) for d in dirs]
    if name == "fashion-mnist":
        searched.append(DEBIAN_FASHION_MNIST)
    for directory in searched:
        if directory.is_dir():
            found = _find_in(name, directory)
            if found is not None:
                return found
    hint = {"mnist": "mnist.npz or MNIST/raw/*-ubyte.gz", "fashion-mnist": "fashion-mnist.npz or FashionMNIST/raw/"
            "*-ubyte.gz (Debian: apt install dataset-fashion-mnist)", "cifar10": "cifar10.npz or cifar-10-batches-py/"}
    raise FileNotFoundError(
        f"dataset {name!r} not found; searched: {', '.join(str(d) for d in searched)}. Put {hint[name]} into one of "
        f"them, or pass --data-dir / set OTALAB_DATA_DIR (nothing is downloaded automatically)")


#: the data sets FEEL falls back through when none is named: MNIST (the paper's) first, then Fashion-MNIST (which
#: setup.sh installs from Debian where apt exists)
FEEL_DEFAULTS: tuple[str, ...] = ("mnist", "fashion-mnist")
#: display names
DISPLAY_NAMES: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def load_first_available(names: tuple[str, ...] = FEEL_DEFAULTS, data_dir: str | Path | None = None
                         ) -> tuple[ImageDataset, list[str]]:
    """The first of ``names`` found (lookup order of :func:`load_dataset`), and one line per data set tried before it
    and why it was passed over. Raises FileNotFoundError naming every data set and place when none is found."""
    passed: list[str] = []
    for name in names:
        try:
            return load_dataset(name, data_dir), passed
        except FileNotFoundError as exc:
            passed.append(f"{DISPLAY_NAMES.get(name, name)} not found: {exc}")
    raise FileNotFoundError(" | ".join(passed) + " | get one with `otalab data fetch mnist` (needs internet), or "
                            "`apt install dataset-fashion-mnist` on Debian/Ubuntu")


# ------------------------------------------------------------------------------------------------ download
#: What ``otalab data fetch`` downloads: the standard archives, checked by the MD5 sums torchvision also uses, into
#: torchvision's layout (``<root>/MNIST/raw/*-ubyte.gz``, ``<root>/cifar-10-batches-py/``).
DOWNLOADS: dict[str, dict] = {
    "mnist": {"base_url": "https://ossci-datasets.s3.amazonaws.com/mnist/", "subdir": "MNIST/raw", "files": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}},
    "cifar10": {"base_url": "https://www.cs.toronto.edu/~kriz/", "subdir": "", "extract": "cifar-10-batches-py",
                "files": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}},
}


def default_download_root() -> Path:
    """Where ``otalab data fetch`` puts data sets by default: ``OTALAB_DATA_DIR`` if set, else torchvision's cache
    (both are on :func:`load_dataset`'s search path)."""
    return Path(os.environ["OTALAB_DATA_DIR"]) if os.environ.get("OTALAB_DATA_DIR") else TORCHVISION_CACHE


def _md5(path: Path) -> str:
    import hashlib  # noqa: PLC0415

    digest = hashlib.md5()  # noqa: S324 - the published checksums of these archives are MD5
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_dataset(name: str, root: str | Path | None = None, *, base_url: str | None = None,
                  md5: dict[str, str] | None = None, progress=None) -> ImageDataset:
    """Download ``name`` ("mnist" or "cifar10") into ``root`` (default :func:`default_download_root`) in torchvision's
    layout, verify each file's MD5, unpack where needed, and return it loaded (which checks that it parses).

    Files already present with the right checksum are not downloaded again. ``base_url`` and ``md5`` replace the
    published location and sums (tests serve small files from a ``file://`` URL). ``progress(done_bytes, total)``
    is called while a file downloads. Raises ValueError (unknown name), OSError (download failed) or
    ValueError naming the file (checksum mismatch; the bad file is removed)."""
    import urllib.request  # noqa: PLC0415

    if name not in DOWNLOADS:
        raise ValueError(f"data fetch {name!r}: expected one of {', '.join(DOWNLOADS)} (Fashion-MNIST: "
                         f"apt install dataset-fashion-mnist)")
    spec = DOWNLOADS[name]
    root = Path(root) if root is not None else default_download_root()
    target = root / spec["subdir"] if spec["subdir"] else root
    target.mkdir(parents=True, exist_ok=True)
    sums = md5 if md5 is not None else spec["files"]
    url = base_url if base_url is not None else spec["base_url"]
    for filename, expected in sums.items():
        path = target / filename
        if path.is_file() and _md5(path) == expected:
            continue
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/" + filename, timeout=60) as response, \
                    open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
            got = _md5(tmp)
            if got != expected:
                raise ValueError(f"{url.rstrip('/')}/{filename}: MD5 {got}, expected {expected}; not kept")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    if spec.get("extract") and not (target / spec["extract"] / "test_batch").is_file():
        for filename in sums:
            with tarfile.open(target / filename, "r:gz") as tar:
                _safe_extract(tar, target)
    _load_cached.cache_clear()
    return load_dataset(name, root)


def _safe_extract(tar: tarfile.TarFile, target: Path) -> None:
    """Unpack regular files and folders only, each inside ``target``.

    Python 3.11.2 (Debian's) has no ``extractall(filter="data")``; this is the part of that filter an archive of
    dataset batches needs: no links, devices or absolute/escaping paths, and no permission bits from the archive.
    """
    root = target.resolve()
    members = [(m, (root / m.name).resolve()) for m in tar.getmembers()]
    for member, dest in members:                 # all checked before anything is written
        if not dest.is_relative_to(root) or not (member.isfile() or member.isdir()):
            raise ValueError(f"{tar.name}: refusing archive member {member.name!r} (not a plain file inside {root})")
    for member, dest in members:
        if member.isdir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tar.extractfile(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
