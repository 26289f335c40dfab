"""What the PS actor and the device actors of one cell both derive from the same settings: PRACH numerology, the
guards between phases, the FFT-window back-off, the TA step and the pilot cover codes.

Both sides build a :class:`CellLayout` from the OFDM preset, the ``sync:`` settings and a
:class:`sync.messages.CellSetup` (the one orchestration message sent before access), so nothing derived travels.
"""

from __future__ import annotations

import math

import numpy as np

from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig
from sync.config import SyncConfig
from sync.messages import CellSetup, feedback_size
from sync.prach import PrachConfig
from sync.timing_advance import ta_step_samples
from sync.uplink import cover_codes, pilot_sequence


class CellLayout:
    """Derived timing of a cell, in samples (read-only after construction).

    ``one_way``: largest one-way delay (ceil); ``tail``: samples read past a phase's end so that the farthest device's
    last echo is in (one way + delay spread + one CP); ``guard``: from one phase's end to the next phase's start when
    no decode sits between them (tail + one way + one CP: a device answering at once, advanced by its round trip,
    still finds its slot ahead of the air); ``backoff``: the PS's FFT window starts this many samples before the CP
    end; ``ta_step``: TA granularity; ``n_pilot``: pilot symbols per refresh (> K: the spare code space gives the
    noise level); ``prach``: the PRACH numerology sized for the cell.
    """

    def __init__(self, ofdm: OfdmConfig, cfg: SyncConfig, setup: CellSetup):
        self.ofdm, self.cfg, self.setup = ofdm, cfg, setup
        self.k = int(setup.devices)
        if self.k < 1:
            raise ValueError(f"devices = {self.k}: a cell needs at least one device")
        fs = self.sample_rate = float(setup.sample_rate)
        spread = int(setup.max_delay_spread)
        self.prach = PrachConfig.for_cell(ofdm.fft_size, ofdm.n_used / ofdm.fft_size, fs, cfg.max_rtt_samples(fs),
                                          spread, cfg.prach_oversampling, min_preambles=self.k + 1)
        if self.k > self.prach.n_preambles:
            raise ValueError(f"{self.k} devices but only {self.prach.n_preambles} PRACH preambles")
        self.one_way = int(math.ceil(cfg.max_rtt_samples(fs) / 2))
        self.tail = self.one_way + spread + ofdm.cp_len
        self.guard = self.tail + self.one_way + ofdm.cp_len
        self.backoff = cfg.window_backoff if cfg.window_backoff is not None else ofdm.cp_len // 2
        self.ta_step = ta_step_samples(ofdm.fft_size, cfg.nr_mu if cfg.ta_standard == "nr" else None)
        self.n_pilot = int(setup.n_pilot_symbols)
        if self.n_pilot < self.k + 1:
            raise ValueError(f"n_pilot_symbols = {self.n_pilot}: expected ≥ devices + 1 = {self.k + 1}")
        self.data_symbols = int(setup.data_symbols)
        self.pilot_taps = ofdm.cp_len + 8    # uplink denoiser support: the CP plus a margin for fractional tails
        self.pilot_first_delay = -4
        used = np.asarray(ofdm.used_subcarriers)
        self.data_pos = np.flatnonzero(np.isin(used, np.asarray(ofdm.data_subcarriers)))
        self.pilot_pos = np.flatnonzero(np.isin(used, np.asarray(ofdm.pilot_subcarriers)))
        #: the value every device sends on the pilot subcarriers of a data burst (the PS sees Σ_k of them, its
        #: common-phase reference)
        self.sum_pilot = np.ones(self.pilot_pos.size, np.complex64)
        #: samples a device keeps before what it has just read: the receiver hands back a frame only once it is
        #: complete, at most a few symbols after its end, so twice the longest downlink frame (the feedback with every
        #: tap kept) plus one CP is ample
        fb = FrameBuilder(ofdm)
        longest = max(fb.frame_len(n_bytes=n, modem=cfg.control_modem, code_rate=cfg.control_code_rate)
                      for n in (16, feedback_size(self.k, self.pilot_taps, cfg.feedback_bits)))
        self.stream_hold = int(2 * longest + ofdm.cp_len)

    @classmethod
    def setup_for(cls, ofdm: OfdmConfig, cfg: SyncConfig, devices: int, sample_rate: float, *,
                  preambles: list[int] | None = None, n_pilot_symbols: int | None = None, data_symbols: int = 8, max_delay_spread: int | None = None,
                  contention_free: bool | None = None) -> CellSetup:
        """The :class:`CellSetup` of a cell with these settings (defaults: as ``SyncSession`` documents them)."""
        spread = ofdm.cp_len // 2 if max_delay_spread is None else int(max_delay_spread)
        n_pilot = max(int(n_pilot_symbols or cfg.pilot_symbols_per_device * devices), devices + 1)
        if contention_free is None:
            contention_free = preambles is None or len(set(preambles)) == len(preambles)
        return CellSetup(devices=int(devices), sample_rate=float(sample_rate), n_pilot_symbols=n_pilot, data_symbols=int(data_symbols),
                         max_delay_spread=spread, contention_free=bool(contention_free))

    def pilot_grid(self, code: int) -> np.ndarray:
        """Pilot values of cover code ``code``: complex64[n_pilot, n_used] (the same as
        :meth:`sync.uplink.UplinkEstimator.transmit_grid`)."""
        return cover_codes(self.k, self.n_pilot)[code][:, None] * pilot_sequence(self.ofdm.n_used)[None, :]
