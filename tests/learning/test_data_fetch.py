"""``otalab data fetch`` and learning.feel.data's download, MD5 check and torchvision layout, on small archives made
here and served from a ``file://`` URL (nothing is downloaded from the internet); the MNIST → Fashion-MNIST
fallback of FEEL's data lookup."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from lab.cli import main
from learning.feel import data as feel_data


def _idx(arr: np.ndarray) -> bytes:
    """IDX encoding: 00 00 08 ndim, big-endian uint32 dims, uint8 data."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mnist_server(tmp_path, rng):
    """A folder with the four MNIST .gz files of a tiny MNIST-shaped set (5 train, 3 test): (url, md5s, arrays)."""
    srv = tmp_path / "srv"
    srv.mkdir()
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 5),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3)}
    for name, arr in arrays.items():
        (srv / name).write_bytes(gzip.compress(_idx(arr)))
    return srv.as_uri(), {n: _md5(srv / n) for n in arrays}, arrays


def test_mnist_lands_in_torchvision_layout_and_loads(tmp_path, mnist_server):
    url, sums, arrays = mnist_server
    root = tmp_path / "root"
    data = feel_data.fetch_dataset("mnist", root, base_url=url, md5=sums)
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(sums)
    np.testing.assert_array_equal(data.x_train, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert data.name == "mnist" and data.source == str(root / "MNIST" / "raw")
    again = feel_data.fetch_dataset("mnist", root, base_url=url + "/gone", md5=sums)  # present: no download
    assert again.x_train.shape == (5, 28, 28)


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(tmp_path, mnist_server):
    url, sums, _ = mnist_server
    bad = dict(sums, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: MD5 .*expected 0{32}"):
        feel_data.fetch_dataset("mnist", tmp_path / "root", base_url=url, md5=bad)
    raw = tmp_path / "root" / "MNIST" / "raw"
    assert not (raw / "t10k-labels-idx1-ubyte.gz").exists() and not list(raw.glob(".*part"))
    with pytest.raises(ValueError, match="expected one of mnist, cifar10"):
        feel_data.fetch_dataset("imagenet", tmp_path)


def test_cifar10_archive_is_unpacked_to_cifar_10_batches_py(tmp_path, rng):
    srv = tmp_path / "srv"
    srv.mkdir()
    batches = {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batches[name] = (rng.integers(0, 256, (2, 3 * 32 * 32)).astype(np.uint8), list(rng.integers(0, 10, 2)))
            blob = pickle.dumps({b"data": batches[name][0], b"labels": batches[name][1]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    (srv / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    data = feel_data.fetch_dataset("cifar10", tmp_path / "root", base_url=srv.as_uri(),
                                   md5={"cifar-10-python.tar.gz": _md5(srv / "cifar-10-python.tar.gz")})
    assert data.x_train.shape == (10, 32, 32, 3) and data.x_test.shape == (2, 32, 32, 3)
    # CIFAR's rows are 1024 R, 1024 G, 1024 B values of a 32x32 image in row order -> HWC
    first = batches["data_batch_1"][0][0]
    np.testing.assert_array_equal(data.x_train[0, :, :, 1], first[1024:2048].reshape(32, 32))
    assert list(data.y_test) == batches["test_batch"][1]


@pytest.mark.parametrize("member", ["../escaped", "/tmp/otalab-absolute", "cifar-10-batches-py/link"])
def test_an_archive_member_outside_the_folder_or_a_link_is_refused(tmp_path, member):
    srv = tmp_path / "srv"
    srv.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member.endswith("link"):
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    (srv / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="refusing archive member"):
        feel_data.fetch_dataset("cifar10", tmp_path / "root", base_url=srv.as_uri(),
                                md5={"cifar-10-python.tar.gz": _md5(srv / "cifar-10-python.tar.gz")})
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "root" / "cifar-10-batches-py" / "link").exists()


def test_cli_fetch_reports_what_it_got(tmp_path, mnist_server, monkeypatch, capsys):
    url, sums, _ = mnist_server
    monkeypatch.setitem(feel_data.DOWNLOADS, "mnist", {**feel_data.DOWNLOADS["mnist"], "base_url": url,
                                                       "files": sums})
    rc = main(["data", "fetch", "mnist", "--data-dir", str(tmp_path / "d"), "--no-progress"])
    assert rc == 0
    assert "MNIST: 5 training and 3 test images in" in capsys.readouterr().out
    monkeypatch.setitem(feel_data.DOWNLOADS, "mnist", {**feel_data.DOWNLOADS["mnist"], "base_url": url + "/nowhere",
                                                       "files": {"x.gz": "0" * 32}})
    assert main(["data", "fetch", "mnist", "--data-dir", str(tmp_path / "e"), "--no-progress"]) == 1
    assert "data fetch error:" in capsys.readouterr().err


def test_feel_falls_back_from_mnist_to_fashion_mnist(tmp_path, rng, monkeypatch):
    fashion = tmp_path / "fashion-mnist"                # Debian's layout: bare IDX .gz files in a "fashion" folder
    fashion.mkdir()
    for name, arr in {"train-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
                      "train-labels-idx1-ubyte": rng.integers(0, 10, 4),
                      "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28)),
                      "t10k-labels-idx1-ubyte": rng.integers(0, 10, 2)}.items():
        (fashion / f"{name}.gz").write_bytes(gzip.compress(_idx(arr)))
    monkeypatch.setattr(feel_data, "candidate_dirs", lambda data_dir=None: [tmp_path / "empty"])
    monkeypatch.setattr(feel_data, "DEBIAN_FASHION_MNIST", fashion)
    feel_data._load_cached.cache_clear()
    data, passed = feel_data.load_first_available()
    assert data.name == "fashion-mnist" and data.x_train.shape == (4, 28, 28)
    assert len(passed) == 1 and passed[0].startswith("MNIST not found")
    monkeypatch.setattr(feel_data, "DEBIAN_FASHION_MNIST", tmp_path / "nothing")
    feel_data._load_cached.cache_clear()
    with pytest.raises(FileNotFoundError, match="MNIST not found.*Fashion-MNIST not found.*otalab data fetch"):
        feel_data.load_first_available()
    feel_data._load_cached.cache_clear()
