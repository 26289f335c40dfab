"""3GPP TR 38.901 tapped-delay-line profiles TDL-A..TDL-E as data.

The tables are TR 38.901 (v16.1.0) Tables 7.7.2-1 to 7.7.2-5, transcribed from the machine-readable copies that
Sionna ships (``sionna/phy/channel/tr38901/models/v16_1/TDL-*.json``). Delays are *normalized*: multiply by the wanted
RMS delay spread (``delay_spread_s``) to get seconds (TR 38.901 §7.7.3, eq. 7.7-1:
``tau_n,scaled = tau_n,model * DS_desired``). Powers are in dB relative to the strongest path.

TDL-D and TDL-E are line-of-sight profiles: their first row is the specular LOS component (constant amplitude, Rician
K-factor 13.3 dB and 22 dB respectively) and the second row, at the same delay 0, is the Rayleigh part of that tap.
All other taps are Rayleigh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TdlProfile:
    """One TDL table: normalized delays (unitless, ×DS → s), powers in dB, and whether row 0 is a specular LOS path."""

    name: str
    delays: tuple[float, ...]
    powers_db: tuple[float, ...]
    los: bool

    def scaled(self, delay_spread_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Delays in seconds (float64[K]) and linear powers normalized to unit sum (float64[K]) for a delay spread."""
        delays = np.asarray(self.delays, dtype=np.float64) * float(delay_spread_s)
        powers = 10.0 ** (np.asarray(self.powers_db, dtype=np.float64) / 10.0)
        return delays, powers / powers.sum()

    def rms_delay_spread(self) -> float:
        """Normalized RMS delay spread of the table, sqrt(Σp τ²/Σp − (Σp τ/Σp)²) (≈ 1 by construction)."""
        tau, p = self.scaled(1.0)
        mean = np.sum(p * tau)
        return float(np.sqrt(np.sum(p * tau ** 2) - mean ** 2))


TDL_A = TdlProfile(
    "TDL-A",
    delays=(0.0, 0.3819, 0.4025, 0.5868, 0.4610, 0.5375, 0.6708, 0.5750, 0.7618, 1.5375, 1.8978, 2.2242, 2.1718,
            2.4942, 2.5119, 3.0582, 4.0810, 4.4579, 4.5695, 4.7966, 5.0066, 5.3043, 9.6586),
    powers_db=(-13.4, 0.0, -2.2, -4.0, -6.0, -8.2, -9.9, -10.5, -7.5, -15.9, -6.6, -16.7, -12.4, -15.2, -10.8, -11.3,
               -12.7, -16.2, -18.3, -18.9, -16.6, -19.9, -29.7),
    los=False,
)

TDL_B = TdlProfile(
    "TDL-B",
    delays=(0.0000, 0.1072, 0.2155, 0.2095, 0.2870, 0.2986, 0.3752, 0.5055, 0.3681, 0.3697, 0.5700, 0.5283, 1.1021,
            1.2756, 1.5474, 1.7842, 2.0169, 2.8294, 3.0219, 3.6187, 4.1067, 4.2790, 4.7834),
    powers_db=(0.0, -2.2, -4.0, -3.2, -9.8, -1.2, -3.4, -5.2, -7.6, -3.0, -8.9, -9.0, -4.8, -5.7, -7.5, -1.9, -7.6,
               -12.2, -9.8, -11.4, -14.9, -9.2, -11.3),
    los=False,
)

TDL_C = TdlProfile(
    "TDL-C",
    delays=(0.0, 0.2099, 0.2219, 0.2329, 0.2176, 0.6366, 0.6448, 0.6560, 0.6584, 0.7935, 0.8213, 0.9336, 1.2285,
            1.3083, 2.1704, 2.7105, 4.2589, 4.6003, 5.4902, 5.6077, 6.3065, 6.6374, 7.0427, 8.6523),
    powers_db=(-4.4, -1.2, -3.5, -5.2, -2.5, 0.0, -2.2, -3.9, -7.4, -7.1, -10.7, -11.1, -5.1, -6.8, -8.7, -13.2, -13.9,
               -13.9, -15.8, -17.1, -16.0, -15.7, -21.6, -22.8),
    los=False,
)

TDL_D = TdlProfile(
    "TDL-D",
    delays=(0.0, 0.0, 0.035, 0.612, 1.363, 1.405, 1.804, 2.596, 1.775, 4.042, 7.937, 9.424, 9.708, 12.525),
    powers_db=(-0.2, -13.5, -18.8, -21.0, -22.8, -17.9, -20.1, -21.9, -22.9, -27.8, -23.6, -24.8, -30.0, -27.7),
    los=True,
)

TDL_E = TdlProfile(
    "TDL-E",
    delays=(0.0, 0.0, 0.5133, 0.5440, 0.5630, 0.5440, 0.7112, 1.9092, 1.9293, 1.9589, 2.6426, 3.7136, 5.4524, 12.0034,
            20.6519),
    powers_db=(-0.03, -22.03, -15.8, -18.1, -19.8, -22.9, -22.4, -18.6, -20.8, -22.6, -22.3, -25.6, -20.2, -29.8,
               -29.2),
    los=True,
)

#: profile name ("TDL-A".."TDL-E") -> table
TDL_PROFILES: dict[str, TdlProfile] = {p.name: p for p in (TDL_A, TDL_B, TDL_C, TDL_D, TDL_E)}
