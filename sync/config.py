"""Synchronization settings: the ``sync:`` section of a bench config (hw_configs/*.yaml).

All durations are in samples at the radio's sample rate, except where a unit is named (metres, ppm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SPEED_OF_LIGHT = 299_792_458.0


@dataclass
class SyncConfig:
    """Beacon, random access, timing advance and pre-equalization settings (defaults suit the 64-point preset)."""

    beacon_period: int = 2_000          # PS beacon every this many samples
    beacons_before_access: int = 4      # beacons a device tracks (time, CFO) before its first PRACH
    cell_radius_m: float = 5_000.0      # sizes the PRACH cyclic prefix, guard and shift zones
    prach_oversampling: int = 16        # PRACH IFFT = this × the data FFT (LTE: 1.25 kHz vs 15 kHz ≈ 12)
    prach_false_alarm: float = 1e-3     # per-zone false-alarm probability of the PRACH detector
    ta_standard: Literal["lte", "nr"] = "lte"
    nr_mu: int = 0                      # NR numerology (TA step = LTE step / 2**mu) when ta_standard is "nr"
    ta_update_period: int = 4           # rounds between closed-loop TA updates (0: never)
    time_alignment_timer: int = 200_000  # samples without a TA command before a device returns to random access
    max_access_attempts: int = 4
    backoff_window: int = 4             # random backoff of 0..backoff_window-1 PRACH slots after a failed access
    pilot_period: int = 1               # rounds between uplink pilots + CSI feedback (channel refresh)
    pilot_symbols_per_device: int = 4   # code-multiplexed pilot symbols per refresh = this × K (pilot energy)
    # bits per real number of the CSI taps fed back (8 costs ~1 dB at 20 dB SNR; 10 measured: docs/sync.md, "Where
    # the gap to genie goes")
    feedback_bits: int = 12
    power: float = 1.0                  # device power budget per subcarrier (unit-power symbols)
    gain_threshold: float = 0.05        # truncated inversion: active iff harmonic-mean channel gain ≥ this
    window_backoff: int | None = None   # PS FFT window starts this many samples before the CP end (default cp/2)
    control_code_rate: float | None = 0.5  # LDPC rate of beacons and control frames (None: uncoded)
    # what the devices' beacon trackers assume of the oscillators between beacons (sync/beacon.py): Wiener phase noise
    # (the air's phase_noise_linewidth_hz, Hz) and a random walk of the CFO (Hz²/s); 0: a steady carrier (the simulated
    # airs), where a tracker unwraps the beacon phase across any gap its CFO estimate can bridge
    phase_noise_linewidth_hz: float = 0.0
    cfo_random_walk: float = 0.0
    # access beacons sent after the beacons_before_access, at 10, 100, 1000, ... beacon periods after the one before
    # (gaps of at most 1 s: sync.ps.LADDER_MAX_GAP_S): each gap is one a device's CFO estimate can unwrap the beacon
    # phase across, and each sharpens the estimate ~10x, so that it bridges the seconds between a cell's rounds (wifi64
    # at 521 kS/s, 20 dB: ~0.05 Hz after the first four, ~1e-3 Hz after the 38 ms and 0.38 s rungs; docs/sync.md).
    # None: 3 in a cell across processes (`otalab cell`, rounds seconds apart), 0 in process (`otalab sync`,
    # SyncSession: beacons every beacon_period anyway)
    beacon_ladder: int | None = None
    control_modem: Literal["bpsk", "qpsk", "16qam"] = "qpsk"  # their modulation (the PS has power to spare)
    # scheduling ahead of real time (samples): every phase starts no earlier than the actor's radio time_now() + lead
    # (a radio node's TX lead; the simulated air accepts any time not yet past, hence 0); a phase whose content
    # depends on a decode gets a turnaround budget on top of the air's guard: ps_turnaround after an uplink the PS
    # must decode (PRACH → RAR, msg3 → msg4, pilots → feedback), device_turnaround after a downlink the devices must
    # decode before they answer (beacons → PRACH/pilots, RAR → msg3, feedback → data). To be filled from a radio
    # node's measured figures; 0 on the simulated air, where decoding takes no air time.
    lead: int = 0
    ps_turnaround: int = 0
    device_turnaround: int = 0

    def __post_init__(self):
        for name in ("beacon_period", "beacons_before_access", "prach_oversampling", "time_alignment_timer",
                     "max_access_attempts", "backoff_window", "pilot_period", "pilot_symbols_per_device",
                     "feedback_bits"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.beacon_ladder is not None and not (isinstance(self.beacon_ladder, int) and 0 <= self.beacon_ladder <= 6):
            raise ValueError(f"beacon_ladder must be an integer 0..6 or null, got {self.beacon_ladder!r}")
        for name in ("phase_noise_linewidth_hz", "cfo_random_walk"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.cell_radius_m < 0:
            raise ValueError(f"cell_radius_m must be ≥ 0, got {self.cell_radius_m}")
        if self.prach_oversampling & (self.prach_oversampling - 1):
            raise ValueError(f"prach_oversampling must be a power of two, got {self.prach_oversampling}")
        if not 0 < self.prach_false_alarm < 1:
            raise ValueError(f"prach_false_alarm must be in (0, 1), got {self.prach_false_alarm}")
        if self.nr_mu not in (0, 1, 2, 3, 4):
            raise ValueError(f"nr_mu must be one of 0..4, got {self.nr_mu}")
        for name in ("lead", "ps_turnaround", "device_turnaround"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0 samples, got {getattr(self, name)}")
        if self.ta_update_period < 0:
            raise ValueError(f"ta_update_period must be ≥ 0, got {self.ta_update_period}")
        if self.control_code_rate not in (None, 0.5, 2 / 3, 0.75, 5 / 6):
            raise ValueError(f"control_code_rate must be null or one of 1/2, 2/3, 3/4, 5/6, got {self.control_code_rate}")
        if not 2 <= self.feedback_bits <= 16:
            raise ValueError(f"feedback_bits must be in 2..16, got {self.feedback_bits}")
        if not self.power > 0 or not self.gain_threshold > 0:
            raise ValueError("power and gain_threshold must be > 0")

    def max_rtt_samples(self, sample_rate: float) -> float:
        """Largest round-trip delay in the cell, in samples."""
        return 2 * self.cell_radius_m / SPEED_OF_LIGHT * sample_rate
