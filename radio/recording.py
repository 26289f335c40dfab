"""SigMF recordings of what a radio sends and receives, and reading them back for replay.

:class:`RecordingRadio` wraps any :class:`~radio.base.Radio` and writes its receive and transmit streams as two SigMF
recordings (``PREFIX-rx.sigmf-meta/-data`` and ``PREFIX-tx...``), complex64 ("cf32_le") samples with the sample rate,
the hardware, and one capture per contiguous stretch of samples: ``core:global_index`` is the radio's sample time of
the capture's first sample, ``core:frequency`` the carrier and ``core:datetime`` the host's UTC time. Gaps in time (an
``rx(at=...)`` that skips ahead, bursts of TX) start a new capture, so the file holds only real samples and every
sample's radio time is known. :meth:`RecordingRadio.annotate` marks stretches (detected frames, an applied timing
advance) by radio sample time.

Files appear atomically: samples go to a temporary file next to the target while recording; :meth:`close` writes the
metadata (with the SHA-512 of the data and the sample count in ``otalab:sample_count``) to a temporary file and moves
both into place with ``os.replace``. A reader never sees a half-written recording under the final names.

:func:`read_recording` reads one stream back through the ``sigmf`` package's own reader, so recordings made elsewhere
replay too: any complex datatype (``ci16_le`` from an SDR, ``cf32_le``, ...) and ``.sigmf`` archives; the SHA-512 is
checked by sigmf. A data file cut short (a copy that stopped, a disk that filled) is read up to its last whole sample
and reported as truncated instead of failing. :func:`read_raw_recording` reads a headerless complex64 file whose rate
the caller states. A stream that recorded no sample is not written (a zero-length dataset says nothing).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np

from radio.base import Radio
from radio.wrappers import RadioWrapper

#: SigMF extension namespace of the keys otalab adds
EXTENSION = "otalab"
_SAMPLE_COUNT = f"{EXTENSION}:sample_count"
_SAMPLE_TIME = f"{EXTENSION}:sample_time"
_STREAM = f"{EXTENSION}:stream"
#: SHA-256 of the metadata itself (SigMF hashes only the data): canonical JSON of the whole metadata without this key
_META_SHA256 = f"{EXTENSION}:meta_sha256"


def meta_digest(meta: dict) -> str:
    """SHA-256 (hex) of a SigMF metadata dict without its own ``otalab:meta_sha256``, over canonical JSON (sorted
    keys, no spaces), so that a changed value anywhere in the metadata — a sample rate, a capture's time — shows."""
    import hashlib

    body = dict(meta)
    body["global"] = {k: v for k, v in meta.get("global", {}).items() if k != _META_SHA256}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_meta_digest(meta: dict, where) -> None:
    want = meta.get("global", {}).get(_META_SHA256)
    if want is not None and want != meta_digest(meta):
        raise ValueError(f"{where}: metadata changed since it was written ({_META_SHA256} does not match)")


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sigmf():
    import sigmf  # noqa: PLC0415 - only needed when recordings are written or read
    return sigmf


class SigmfStreamWriter:
    """One stream (rx or tx) being recorded: ``append(samples, t0)`` as it happens, ``close()`` to publish.

    ``base`` is the path without extension; the files are ``base.sigmf-data`` and ``base.sigmf-meta``.
    """

    def __init__(self, base: str | Path, stream: str, sample_rate: float, hardware: str, description: str = "",
                 author: str | None = None, archive: bool = False):
        self.base = Path(base)
        self.stream = stream
        self.sample_rate = float(sample_rate)
        self.hardware = hardware
        self.description = description
        self.author = author
        self.archive = archive
        self.archive_path = self.base.with_name(self.base.name + ".sigmf")
        self.base.parent.mkdir(parents=True, exist_ok=True)
        self.data_path = self.base.with_name(self.base.name + ".sigmf-data")
        self.meta_path = self.base.with_name(self.base.name + ".sigmf-meta")
        self._tmp_data = self.data_path.with_name(f".{self.data_path.name}.{os.getpid()}.tmp")
        self._file = open(self._tmp_data, "wb")  # noqa: SIM115 - closed in close()
        self.count = 0                                   # samples written
        self.captures: list[dict] = []                   # {"start", "time", "freq", "datetime"}
        self.annotations: list[dict] = []
        self._next_time: int | None = None
        self.closed = False

    def append(self, samples: np.ndarray, t0: int, center_freq: float) -> None:
        """Record complex64[N] samples whose first sample is at radio time ``t0``."""
        x = np.ascontiguousarray(samples, dtype=np.complex64)
        if x.size == 0:
            return
        cap = self.captures[-1] if self.captures else None
        if cap is None or t0 != self._next_time or center_freq != cap["freq"]:
            self.captures.append({"start": self.count, "time": int(t0), "freq": float(center_freq),
                                  "datetime": _utc_now()})
        self._file.write(x.astype("<c8", copy=False).tobytes())
        self.count += x.size
        self._next_time = int(t0) + x.size

    def index_of(self, t: int) -> int | None:
        """File index of radio time ``t`` (None if that sample was not recorded)."""
        for i, cap in enumerate(self.captures):
            end = self.captures[i + 1]["start"] if i + 1 < len(self.captures) else self.count
            if cap["time"] <= t < cap["time"] + (end - cap["start"]):
                return cap["start"] + (t - cap["time"])
        return None

    def ranges(self) -> list[tuple[int, int]]:
        """Recorded radio-time ranges [(first, end)]."""
        out = []
        for i, cap in enumerate(self.captures):
            end = self.captures[i + 1]["start"] if i + 1 < len(self.captures) else self.count
            out.append((cap["time"], cap["time"] + end - cap["start"]))
        return out

    def annotate(self, start_sample: int, length: int, label: str, comment: str | None = None,
                 **extra) -> None:
        index = self.index_of(int(start_sample))
        if index is None:
            raise ValueError(f"annotate: sample time {start_sample} is not in the recorded {self.stream} stream "
                             f"(recorded ranges: {self.ranges() or 'none yet'})")
        if length < 0:
            raise ValueError(f"annotate: length must be >= 0 samples, got {length}")
        meta = {"core:label": str(label), _SAMPLE_TIME: int(start_sample)}
        if comment:
            meta["core:comment"] = str(comment)
        meta.update({k if ":" in k else f"{EXTENSION}:{k}": v for k, v in extra.items()})
        self.annotations.append({"start": index, "length": int(length), "meta": meta})

    def close(self) -> Path | None:
        """Publish the recording (atomic); returns the metadata path, or None when no sample was recorded (a stream
        without samples is not written: a zero-length SigMF dataset says nothing and readers reject it)."""
        if self.closed:
            return self.meta_path if self.count else None
        self.closed = True
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if not self.count:
            self._tmp_data.unlink(missing_ok=True)
            return None
        os.replace(self._tmp_data, self.data_path)
        sigmf = _sigmf()
        meta = sigmf.SigMFFile(global_info={
            "core:datatype": "cf32_le", "core:sample_rate": self.sample_rate, "core:version": sigmf.__specification__,
            "core:hw": self.hardware, "core:recorder": "otalab", "core:description": self.description or
            f"otalab {self.stream} stream", "core:num_channels": 1, _SAMPLE_COUNT: self.count, _STREAM: self.stream,
            "core:extensions": [{"name": EXTENSION, "version": "0.1.0", "optional": True}],
            **({"core:author": self.author} if self.author else {})})
        for cap in self.captures:
            meta.add_capture(cap["start"], {"core:global_index": cap["time"], "core:frequency": cap["freq"],
                                            "core:datetime": cap["datetime"]})
        for ann in self.annotations:
            meta.add_annotation(ann["start"], ann["length"] or None, ann["meta"])
        from sigmf import hashing  # noqa: PLC0415
        meta.set_global_field("core:sha512", hashing.calculate_sha512(filename=self.data_path))
        meta.validate()
        meta.set_global_field(_META_SHA256, meta_digest(json.loads(meta.dumps())))
        tmp_meta = self.meta_path.with_name(f".{self.meta_path.name}.{os.getpid()}.tmp")
        tmp_meta.write_text(meta.dumps(pretty=True) + "\n", encoding="utf-8")
        os.replace(tmp_meta, self.meta_path)
        if self.archive:  # also one .sigmf (tar) file holding both, e.g. to share a run
            meta.set_data_file(self.data_path, skip_checksum=True)
            tmp_archive = self.archive_path.with_name(f".{self.archive_path.name}.{os.getpid()}.tmp")
            with open(tmp_archive, "wb") as fileobj:
                meta.archive(name=self.archive_path.name, fileobj=fileobj)
            os.replace(tmp_archive, self.archive_path)
        return self.meta_path

    def abort(self) -> None:
        """Drop the recording (removes the temporary file)."""
        if not self.closed:
            self.closed = True
            self._file.close()
            self._tmp_data.unlink(missing_ok=True)


class RecordingRadio(RadioWrapper):
    """Any radio, with its rx and tx streams recorded to SigMF (``PREFIX-rx`` and ``PREFIX-tx``).

    ``RecordingRadio(radio, path_prefix, record_rx=True, record_tx=True, description="", author=None,
    close_radio=True, archive=False)``; ``archive=True`` also writes ``PREFIX-rx.sigmf`` (SigMF archive: one tar file
    with metadata and data) for streams that hold samples. Everything is forwarded to ``radio``; ``annotate(start_sample, length, label, comment,
    stream="rx")`` marks a stretch by radio sample time. ``close()`` publishes the recordings (and closes ``radio``
    unless ``close_radio=False``).
    """

    def __init__(self, radio: Radio, path_prefix: str | Path, *, record_rx: bool = True, record_tx: bool = True,
                 description: str = "", author: str | None = None, close_radio: bool = True,
                 archive: bool = False):
        super().__init__(radio)
        self.prefix = Path(path_prefix)
        self._close_radio = close_radio
        hardware = repr(radio)
        self.writers: dict[str, SigmfStreamWriter] = {}
        for stream, wanted in (("rx", record_rx), ("tx", record_tx)):
            if wanted:
                self.writers[stream] = SigmfStreamWriter(self.prefix.with_name(f"{self.prefix.name}-{stream}"),
                                                         stream, radio.sample_rate, hardware, description, author,
                                                         archive)

    @property
    def radio(self) -> Radio:
        """The recorded radio (``inner``)."""
        return self.inner

    @property
    def stats(self) -> dict:
        return getattr(self.radio, "stats", {})

    def paths(self) -> dict[str, Path]:
        """stream -> path of its ``.sigmf-meta`` (exists after close for streams that recorded samples)."""
        return {s: w.meta_path for s, w in self.writers.items()}

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        t = self.radio.tx(samples, at)
        if "tx" in self.writers:
            self.writers["tx"].append(np.asarray(samples, np.complex64), t, self.radio.center_freq)
        return t

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        x, t0 = self.radio.rx(n, at)
        if "rx" in self.writers:
            self.writers["rx"].append(x, t0, self.radio.center_freq)
        return x, t0

    def annotate(self, start_sample: int, length: int, label: str, comment: str | None = None, *,
                 stream: str = "rx", **extra) -> None:
        """Mark ``length`` samples from radio time ``start_sample`` in ``stream`` ("rx" or "tx") with ``label``
        (SigMF ``core:label``/``core:comment``; ``extra`` keys go to the otalab namespace, e.g. ``snr_db=12.5``)."""
        if stream not in self.writers:
            raise ValueError(f"annotate: stream {stream!r} is not recorded; recorded: {sorted(self.writers)}")
        self.writers[stream].annotate(start_sample, length, label, comment, **extra)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        if self._close_radio:
            self.radio.close()

    def settings(self) -> dict:
        out = dict(self.radio.settings())
        out["recording"] = str(self.prefix)
        return out


@dataclasses.dataclass
class Recording:
    """One recorded stream read back.

    ``samples``: complex64[N] (N whole samples present in the data file); ``captures``: list of
    (file index, radio sample time, centre frequency); ``annotations``: list of dicts (SigMF keys); ``expected``:
    samples the metadata says were recorded; ``truncated``: the data file holds fewer than ``expected``.
    """

    path: Path
    samples: np.ndarray
    sample_rate: float
    captures: list[tuple[int, int, float]]
    annotations: list[dict]
    global_info: dict
    expected: int
    truncated: bool

    @property
    def center_freq(self) -> float:
        return self.captures[0][2] if self.captures else 0.0

    def segments(self) -> list[tuple[np.ndarray, int]]:
        """Contiguous stretches present in the file: [(complex64 samples, radio time of the first)]."""
        out = []
        for i, (start, t0, _) in enumerate(self.captures):
            end = self.captures[i + 1][0] if i + 1 < len(self.captures) else self.expected
            end = min(end, self.samples.size)
            if end > start:
                out.append((self.samples[start:end], t0))
        return out


def recording_meta_path(path: str | Path) -> Path:
    """Accept ``X.sigmf-meta``, ``X.sigmf-data`` or ``X`` and return ``X.sigmf-meta``."""
    p = Path(path)
    for ext in (".sigmf-meta", ".sigmf-data"):
        if p.name.endswith(ext):
            return p.with_name(p.name[: -len(ext)] + ".sigmf-meta")
    return p.with_name(p.name + ".sigmf-meta")


def _archive_path(path: Path) -> Path | None:
    """The SigMF archive (``X.sigmf``) that ``path`` names, if that is what it names."""
    if path.name.endswith(".sigmf") and path.is_file():
        return path
    base = recording_meta_path(path)
    candidate = base.with_name(base.name[: -len(".sigmf-meta")] + ".sigmf")
    return candidate if not base.is_file() and candidate.is_file() else None


def read_recording(path: str | Path, verify: bool = True) -> Recording:
    """Read one SigMF recording through the ``sigmf`` package's reader.

    ``path``: ``X.sigmf-meta``, ``X.sigmf-data``, ``X`` or a SigMF archive ``X.sigmf``. Any complex datatype
    (``cf32_le``, ``ci16_le``, ``ci8``, ``cu8``, ``cf64_be``, ...) with one channel; fixed-point samples are scaled
    to [-1, 1) by sigmf (``ci16``: value / 2**15). Returns complex64[N] samples.

    A data file shorter than the metadata's ``otalab:sample_count`` says (or with a partial last sample) is read to
    its last whole sample and flagged ``truncated``; otherwise ``verify`` checks ``core:sha512`` through sigmf's own
    hash check. Raises ValueError naming the file when it is not a recording otalab can use (real-valued or
    multi-channel data, missing data file, changed data, invalid metadata).
    """
    import warnings  # noqa: PLC0415

    sigmf = _sigmf()
    from sigmf import sigmffile  # noqa: PLC0415

    p = Path(path)
    archive = _archive_path(p)
    meta_path = archive if archive is not None else recording_meta_path(p)
    if archive is None and not meta_path.is_file():
        raise ValueError(f"{path}: no SigMF metadata file {meta_path} (nor an archive "
                         f"{meta_path.with_name(meta_path.name[: -len('.sigmf-meta')] + '.sigmf')})")
    if archive is None:
        data_path = meta_path.with_name(meta_path.name[: -len(".sigmf-meta")] + ".sigmf-data")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            dataset = meta.get("global", {}).get("core:dataset")
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(f"{meta_path}: not a valid SigMF recording: {exc}") from None
        if verify:
            _check_meta_digest(meta, meta_path)
        if dataset:  # a non-conforming dataset named by the metadata
            data_path = meta_path.with_name(str(dataset))
        if not data_path.is_file():
            raise ValueError(f"{meta_path}: its data file {data_path} is missing")
    else:
        data_path = archive
    def changed(exc: Exception) -> ValueError:
        return ValueError(f"{data_path}: SHA-512 does not match {meta_path} (the data file was changed): {exc}")

    try:
        with warnings.catch_warnings():   # a partial last sample warns; it is reported below as truncated
            warnings.simplefilter("ignore")
            # an archive's hash is checked by sigmf while it opens it (over the data member of the tar); a pair's
            # below, once we know the data file is whole
            handle = sigmffile.fromfile(str(meta_path), skip_checksum=archive is None or not verify)
            handle.validate()
    except sigmf.error.SigMFFileError as exc:
        if "hash" in str(exc):
            raise changed(exc) from None
        raise ValueError(f"{meta_path}: not a valid SigMF recording: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - json, jsonschema and sigmf raise several types for unreadable files
        raise ValueError(f"{meta_path}: not a valid SigMF recording: {exc}") from None
    if not isinstance(handle, sigmf.SigMFFile):
        raise ValueError(f"{meta_path}: is a {type(handle).__name__}; otalab replays one recording")
    info = handle.get_global_info()
    datatype = str(info.get("core:datatype"))
    channels = int(info.get("core:num_channels", 1))
    if not datatype.startswith("c") or channels != 1:
        raise ValueError(f"{meta_path}: core:datatype {datatype!r} with {channels} channel(s); otalab replays "
                         f"one-channel complex baseband (a datatype starting with 'c', e.g. 'cf32_le', 'ci16_le')")
    present = int(handle.sample_count)
    sample_bytes = handle.get_sample_size()
    n_bytes = getattr(handle, "data_size_bytes", None)
    if n_bytes is None:
        n_bytes = data_path.stat().st_size if archive is None else present * sample_bytes
    expected = int(info.get(_SAMPLE_COUNT, present))
    truncated = present < expected or (archive is None and n_bytes % sample_bytes != 0)
    if verify and archive is None and not truncated and info.get("core:sha512"):
        try:
            handle.calculate_hash()   # sigmf's check: raises when the data's SHA-512 differs from the metadata's
        except sigmf.error.SigMFFileError as exc:
            raise changed(exc) from None
    samples = (np.asarray(handle.read_samples(), dtype=np.complex64).reshape(-1) if present
               else np.zeros(0, np.complex64))
    captures = [(int(c["core:sample_start"]), int(c.get("core:global_index", c["core:sample_start"])),
                 float(c.get("core:frequency", 0.0))) for c in handle.get_captures()]
    return Recording(path=meta_path, samples=samples, sample_rate=float(info["core:sample_rate"]),
                     captures=captures, annotations=list(handle.get_annotations()), global_info=info,
                     expected=expected, truncated=truncated)


def read_raw_recording(path: str | Path, sample_rate: float, center_freq: float = 0.0) -> Recording:
    """Read a headerless file of complex64 samples (interleaved little-endian float32 I/Q, as GNU Radio's file sink
    and numpy's ``tofile`` write them) as one capture starting at sample time 0.

    ``sample_rate`` (Hz, > 0) and ``center_freq`` (Hz) are not in the file: the caller states them. A partial last
    sample (size not a multiple of 8 bytes) is dropped and flagged ``truncated``.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such raw sample file")
    if not sample_rate or sample_rate <= 0:
        raise ValueError(f"{path}: sample_rate={sample_rate!r}; a raw complex64 file needs the sample rate in Hz > 0")
    n_bytes = p.stat().st_size
    samples = np.fromfile(p, dtype="<c8", count=n_bytes // 8).astype(np.complex64, copy=False)
    return Recording(path=p, samples=samples, sample_rate=float(sample_rate),
                     captures=[(0, 0, float(center_freq))], annotations=[],
                     global_info={"core:datatype": "cf32_le", "core:sample_rate": float(sample_rate)},
                     expected=int(samples.size), truncated=n_bytes % 8 != 0)
