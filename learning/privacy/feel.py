"""The privacy account of a FEEL run: per-round noise multipliers of the scheme's Gaussian mechanism
(:mod:`learning.privacy.mechanism`), the noise devices must add to reach a target epsilon, and the composition over
rounds (:class:`learning.privacy.accountant.PrivacyAccountant`).

Used by :class:`learning.feel.runner.FeelExperiment` through three hooks per round: :meth:`FeelPrivacy.privatize`
(digital/ideal: clip and local noise on the device's update), :meth:`FeelPrivacy.artificial_noise` (analog: the
devices' superposed artificial noise) and :meth:`FeelPrivacy.account` (the round's record entries).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from learning.privacy.accountant import PrivacyAccountant, noise_multiplier_for
from learning.privacy.mechanism import (analog_noise_multiplier, analog_sensitivity, artificial_noise_var,
                                        clip_rows)

ANALOG = ("analog", "uncoded")


class FeelPrivacy:
    """Privacy of one run. scheme: the scheme's name; noise_var: receiver noise sigma^2; power: P_t; clip: C (None:
    no clipping); s_max: ||A||_2 of A-DSGD's projection (1 otherwise); target_epsilon: None (account only) or the
    epsilon to reach after ``rounds`` rounds at ``delta``; channel_uses: s (artificial noise energy per device is
    s sigma_a^2); power_norm: A-DSGD's power normalisation."""

    def __init__(self, scheme: str, noise_var: float, power: float, clip: float | None, delta: float, rounds: int,
                 target_epsilon: float | None = None, s_max: float = 1.0, channel_uses: int = 1,
                 power_norm: str = "projected", seed: int = 0):
        if clip is not None and not clip > 0:
            raise ValueError(f"clip = {clip}: expected > 0 (or None)")
        if scheme not in ANALOG and target_epsilon is not None and clip is None:
            raise ValueError(f"--target-epsilon with scheme {scheme!r} needs --clip: a digital device's update has "
                             f"unbounded sensitivity otherwise")
        self.scheme, self.noise_var, self.power, self.clip = scheme, float(noise_var), float(power), clip
        self.s_max, self.s, self.power_norm, self.seed = float(s_max), int(channel_uses), power_norm, int(seed)
        self.target_epsilon = target_epsilon
        self.accountant = PrivacyAccountant(delta)
        #: the noise multiplier every round must reach (None: no target)
        self.target_multiplier = (noise_multiplier_for(target_epsilon, delta, rounds)
                                  if target_epsilon is not None else None)
        #: D-DSGD / error-free: each device's local noise std on its clipped update (z * 2C), 0 without a target
        self.local_std = (self.target_multiplier * 2 * clip
                          if scheme not in ANALOG and self.target_multiplier is not None else 0.0)
        self._artificial_var = 0.0

    @property
    def artificial_var(self) -> float:
        """sigma_a^2 of the current round (set by :meth:`artificial_noise`)."""
        return self._artificial_var

    @property
    def delta(self) -> float:
        return self.accountant.delta

    def privatize(self, t: int, vector: torch.Tensor) -> torch.Tensor:
        """Digital/ideal schemes: each device's update clipped to C plus N(0, local_std^2 I) (a new tensor); analog
        schemes and runs without clipping: ``vector`` unchanged (analog clipping happens in the encoder)."""
        if self.scheme in ANALOG or self.clip is None:
            return vector
        out = clip_rows(vector.clone(), self.clip)
        if self.local_std > 0:
            noise = np.random.default_rng([self.seed, t, 52]).standard_normal(out.shape).astype(np.float32)
            out += torch.from_numpy(noise) * self.local_std
        return out

    def _sensitivity(self, gain_max: float) -> float:
        return analog_sensitivity(self.power, self.clip, self.s_max, self.power_norm, gain_max)

    def artificial_noise(self, t: int, n_devices: int, gain_max: float, length: int) -> torch.Tensor | None:
        """Analog schemes with a target: the sum of the n transmitting devices' artificial noise float32[length]
        (each device radiates N(0, sigma_a^2) per channel use, only as much as the receiver noise lacks); None when
        none is needed. Sets the round's sigma_a^2 for :meth:`account`."""
        self._artificial_var = 0.0
        if self.scheme not in ANALOG or self.target_multiplier is None or n_devices == 0:
            return None
        self._artificial_var = artificial_noise_var(self.target_multiplier, self.noise_var, n_devices,
                                                    self._sensitivity(gain_max))
        if self._artificial_var == 0:
            return None
        noise = np.random.default_rng([self.seed, t, 53]).standard_normal(length)
        return torch.from_numpy((math.sqrt(n_devices * self._artificial_var) * noise).astype(np.float32))

    def account(self, n_devices: int, gain_max: float = 1.0) -> dict:
        """Compose this round (n devices released something) -> record entries: noise_multiplier, epsilon (None
        when infinite), artificial/local noise per device."""
        if n_devices == 0:
            z = math.inf
        elif self.scheme in ANALOG:
            z = analog_noise_multiplier(self.noise_var, self._artificial_var, n_devices, self._sensitivity(gain_max))
        else:
            z = self.local_std / (2 * self.clip) if self.clip is not None else 0.0
        eps = self.accountant.step(z)
        return {"noise_multiplier": z if math.isfinite(z) else None, "epsilon": eps if math.isfinite(eps) else None,
                "artificial_noise_var": self._artificial_var,
                "artificial_energy": self._artificial_var * self.s, "local_noise_std": self.local_std}

    def replay(self, records: list[dict]) -> None:
        """Rebuild the account from a resumed run's records (their noise multipliers)."""
        self.accountant = PrivacyAccountant(self.delta)
        for r in records:
            if "noise_multiplier" in r:
                z = r["noise_multiplier"]
                self.accountant.step(math.inf if z is None else z)

    def summary(self) -> dict:
        """Top-level entries of the result JSON."""
        eps = self.accountant.epsilon()
        return {"epsilon": eps if math.isfinite(eps) else None, "delta": self.delta,
                "privacy": {"unit": "device, replace-one", "clip": self.clip, "target_epsilon": self.target_epsilon,
                            "target_noise_multiplier": self.target_multiplier, "spectral_norm": self.s_max,
                            "accountant": "dp-accounting RDP",
                            "note": None if math.isfinite(eps) else "exact release: no clipping or no noise"}}
