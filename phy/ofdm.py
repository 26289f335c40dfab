"""OFDM numerology: :class:`OfdmConfig` (validated value object), its presets, the YAML section :class:`OfdmSection`,
and the two grid <-> time-domain transforms every other phy block uses.

Conventions (project-wide)
--------------------------
* Subcarriers are named by signed index ``k`` in ``[-fft_size/2, fft_size/2)``; FFT bin of ``k`` is ``k % fft_size``.
* Modulation uses the orthonormal FFT (``norm="ortho"``): a unit-power symbol on every used subcarrier and complex
  noise of variance ``N0`` per time-domain sample give a per-subcarrier SNR of exactly ``1/N0``.
  "SNR" in otalab is that per-data-subcarrier Es/N0.
* Samples are complex64.

This is the project's core DSP, so it is written here (numpy + scipy.fft) rather than taken from a library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np

try:  # scipy.fft is faster and honours ``workers``; numpy.fft is the fallback
    import scipy.fft as fftlib
except ImportError:  # pragma: no cover - scipy is a dependency
    fftlib = np.fft
#: former private name of :data:`fftlib` (the FFT module every phy block uses)
_fft = fftlib

PRESETS = ("wifi64", "wide256")


def _preset_fields(name: str) -> dict:
    """Subcarrier plan of a named preset (see :meth:`OfdmConfig.preset`)."""
    if name == "wifi64":
        pilots = (-21, -7, 7, 21)
        used = [k for k in range(-26, 27) if k != 0]
        return dict(fft_size=64, cp_len=16,
                    data_subcarriers=tuple(k for k in used if k not in pilots),
                    pilot_subcarriers=pilots, pilot_values=(1.0, 1.0, 1.0, -1.0))
    if name == "wide256":
        pilots = (-91, -65, -39, -13, 13, 39, 65, 91)
        used = [k for k in range(-104, 105) if k != 0]
        return dict(fft_size=256, cp_len=32,
                    data_subcarriers=tuple(k for k in used if k not in pilots),
                    pilot_subcarriers=pilots, pilot_values=(1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0))
    raise ValueError(f"OFDM preset {name!r} is unknown; allowed presets: {', '.join(PRESETS)}")


@dataclass(frozen=True)
class OfdmConfig:
    """OFDM numerology, validated on construction.

    Parameters
    ----------
    fft_size : int
        FFT length N, a power of two in [16, 4096].
    cp_len : int
        Cyclic-prefix length in samples, 1 <= cp_len <= fft_size // 2.
    sample_rate : float
        Samples per second (> 0); only used to convert subcarrier units to Hz.
    data_subcarriers, pilot_subcarriers : tuple[int, ...]
        Signed subcarrier indices in [-N/2, N/2), disjoint, no duplicates, DC (0) excluded.
    pilot_values : tuple[complex, ...]
        One unit-magnitude value per pilot subcarrier.
    """

    fft_size: int
    cp_len: int
    sample_rate: float
    data_subcarriers: tuple
    pilot_subcarriers: tuple
    pilot_values: tuple

    def __post_init__(self):
        n = self.fft_size
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 16 or n > 4096 or n & (n - 1):
            raise ValueError(f"fft_size = {n!r}: expected a power of two between 16 and 4096")
        if not isinstance(self.cp_len, (int, np.integer)) or isinstance(self.cp_len, bool) \
                or not 1 <= self.cp_len <= n // 2:
            raise ValueError(f"cp_len = {self.cp_len!r}: expected an integer between 1 and fft_size/2 = {n // 2}")
        if not (isinstance(self.sample_rate, (int, float, np.number)) and np.isfinite(self.sample_rate)
                and self.sample_rate > 0):
            raise ValueError(f"sample_rate = {self.sample_rate!r}: expected a finite number of samples/s > 0")
        for name in ("data_subcarriers", "pilot_subcarriers"):
            ks = getattr(self, name)
            try:
                ks = tuple(int(k) for k in ks)
            except (TypeError, ValueError):
                raise ValueError(f"{name} = {ks!r}: expected a sequence of signed integer subcarrier indices") \
                    from None
            object.__setattr__(self, name, ks)
            bad = [k for k in ks if not -n // 2 <= k < n // 2 or k == 0]
            if bad:
                raise ValueError(f"{name} contains {bad[0]}: expected nonzero indices in [{-n // 2}, {n // 2 - 1}]")
            if len(set(ks)) != len(ks):
                raise ValueError(f"{name} = {ks}: contains duplicate subcarriers")
        if not self.data_subcarriers:
            raise ValueError("data_subcarriers is empty: expected at least one data subcarrier")
        both = set(self.data_subcarriers) & set(self.pilot_subcarriers)
        if both:
            raise ValueError(f"subcarrier {min(both)} is both a data and a pilot subcarrier; expected disjoint sets")
        try:
            pv = tuple(complex(v) for v in self.pilot_values)
        except (TypeError, ValueError):
            raise ValueError(f"pilot_values = {self.pilot_values!r}: expected a sequence of complex numbers") from None
        if len(pv) != len(self.pilot_subcarriers):
            raise ValueError(f"pilot_values has {len(pv)} values: expected one per pilot subcarrier "
                             f"({len(self.pilot_subcarriers)})")
        if any(abs(abs(v) - 1.0) > 1e-6 for v in pv):
            raise ValueError(f"pilot_values = {pv}: expected unit-magnitude values")
        object.__setattr__(self, "pilot_values", pv)
        if len(self.used_subcarriers) < 8:
            raise ValueError(f"only {len(self.used_subcarriers)} used subcarriers: expected at least 8")

    # ---------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, sample_rate: float = 20e6, cp_len: int | None = None) -> "OfdmConfig":
        """Named numerology.

        ``"wifi64"``: 64-FFT, CP 16, 48 data + 4 pilots (±7, ±21), subcarriers ±1..±26 (DC null) - 802.11a/g.
        ``"wide256"``: 256-FFT, CP 32, 200 data + 8 pilots (±13, ±39, ±65, ±91), subcarriers ±1..±104.
        """
        fields = _preset_fields(name)
        if cp_len is not None:
            fields["cp_len"] = cp_len
        return cls(sample_rate=sample_rate, **fields)

    # ------------------------------------------------------------- properties
    @property
    def subcarrier_spacing(self) -> float:
        """Subcarrier spacing in Hz (sample_rate / fft_size)."""
        return self.sample_rate / self.fft_size

    @cached_property
    def symbol_len(self) -> int:
        """Samples per OFDM symbol including the cyclic prefix."""
        return self.fft_size + self.cp_len

    @cached_property
    def n_data(self) -> int:
        """Number of data subcarriers."""
        return len(self.data_subcarriers)

    @cached_property
    def n_pilots(self) -> int:
        """Number of pilot subcarriers."""
        return len(self.pilot_subcarriers)

    @cached_property
    def used_subcarriers(self) -> tuple:
        """Data and pilot subcarriers, sorted ascending."""
        return tuple(sorted(self.data_subcarriers + self.pilot_subcarriers))

    @property
    def n_used(self) -> int:
        """Number of used (data + pilot) subcarriers."""
        return len(self.used_subcarriers)

    # FFT-bin index arrays (int64) used by the vectorized blocks
    @cached_property
    def data_bins(self) -> np.ndarray:
        """FFT bins of the data subcarriers, int64 [n_data]."""
        return np.asarray(self.data_subcarriers, dtype=np.int64) % self.fft_size

    @cached_property
    def pilot_bins(self) -> np.ndarray:
        """FFT bins of the pilot subcarriers, int64 [n_pilots]."""
        return np.asarray(self.pilot_subcarriers, dtype=np.int64) % self.fft_size

    @cached_property
    def used_bins(self) -> np.ndarray:
        """FFT bins of the used subcarriers (ascending signed index order), int64 [n_used]."""
        return np.asarray(self.used_subcarriers, dtype=np.int64) % self.fft_size

    @cached_property
    def pilot_array(self) -> np.ndarray:
        """Pilot values, complex64 [n_pilots]."""
        return np.asarray(self.pilot_values, dtype=np.complex64)

    def hz_to_subcarriers(self, hz: float) -> float:
        """Frequency offset in Hz -> subcarrier spacings."""
        return hz / self.subcarrier_spacing

    def describe(self) -> dict:
        """Flat summary for tables and result files."""
        return {"fft_size": self.fft_size, "cp_len": self.cp_len, "sample_rate": self.sample_rate,
                "n_data": self.n_data, "n_pilots": self.n_pilots,
                "subcarrier_spacing_hz": self.subcarrier_spacing}


@dataclass
class OfdmSection:
    """YAML schema of the ``ofdm:`` section: a preset name and optional overrides."""

    preset: str = "wifi64"
    cp_len: int | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset = {self.preset!r}: expected one of {', '.join(PRESETS)}")
        self.to_config()  # validate the overrides now (errors name the field), not when a radio is opened

    def to_config(self, sample_rate: float = 20e6) -> OfdmConfig:
        """The validated :class:`OfdmConfig` for ``sample_rate``."""
        return OfdmConfig.preset(self.preset, sample_rate=sample_rate, cp_len=self.cp_len)


# ------------------------------------------------------------------------------------------- transforms
def grid_to_time(cfg: OfdmConfig, grid: np.ndarray, cp_len: int | None = None) -> np.ndarray:
    """OFDM modulation: ``grid`` complex [n_sym, fft_size] in FFT-bin order -> complex64 [n_sym * (N + cp)].

    Orthonormal IFFT per symbol, cyclic prefix prepended (``cp_len`` overrides ``cfg.cp_len``).
    """
    cp = cfg.cp_len if cp_len is None else cp_len
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.shape[1] != cfg.fft_size:
        raise ValueError(f"grid has shape {grid.shape}: expected (n_symbols, fft_size={cfg.fft_size})")
    n_sym, n = grid.shape
    out = np.empty((n_sym, n + cp), dtype=np.complex64)
    out[:, cp:] = _fft.ifft(grid.astype(np.complex64, copy=False), axis=1, norm="ortho")
    out[:, :cp] = out[:, n:]
    return out.reshape(-1)


def time_to_grid(cfg: OfdmConfig, samples: np.ndarray, n_sym: int, start: int = 0) -> np.ndarray:
    """OFDM demodulation of ``n_sym`` consecutive symbols whose first CP starts at ``samples[start]``.

    Returns complex64 [n_sym, fft_size] in FFT-bin order (orthonormal FFT, CP dropped).
    """
    sl = cfg.symbol_len
    seg = samples[start:start + n_sym * sl]
    if seg.size != n_sym * sl:
        raise ValueError(f"samples hold {seg.size} samples from {start}: expected {n_sym} symbols = {n_sym * sl}")
    sym = seg.reshape(n_sym, sl)[:, cfg.cp_len:]
    return _fft.fft(sym, axis=1, norm="ortho").astype(np.complex64, copy=False)


def replace(cfg: OfdmConfig, **changes) -> OfdmConfig:
    """A copy of ``cfg`` with ``changes`` applied (re-validated)."""
    return dataclasses.replace(cfg, **changes)
