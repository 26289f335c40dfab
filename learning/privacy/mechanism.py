"""The per-round Gaussian mechanisms of federated edge learning: clipping, sensitivities, noise multipliers.

Privacy unit: one device's data (device-level DP), neighbouring = *replace one device's data* (bounded DP), so a
release whose per-device contribution has norm <= r has L2 sensitivity 2 r. Noise multiplier z = sigma / Delta.

A-DSGD (over the air, Amiri & Gündüz TSP 2020, Sec. IV). What the PS observes is y = sum_m u_m + z + sum_m n_m with
u_m the contribution of device m as it arrives (after truncated channel inversion), z ~ N(0, sigma^2 I_s) the
receiver noise and n_m ~ N(0, sigma_a^2 I_s) artificial noise a device may add. Everything the PS computes is
post-processing of y.

* With clipping (``clip`` C): each device scales its sparse update so ||g_sp|| <= C before projection, and all
  devices use the data-independent power scaling alpha = P / (s_max^2 C^2 + 1), s_max = ||A||_2 the largest singular
  value of the projection, so every device meets ||x_m||^2 <= P and u_m = sqrt(alpha) [A g_sp_m ; 1]. The scale
  entry is data-independent, so Delta = 2 sqrt(alpha) s_max C and
      z_A = sqrt(sigma^2 + M' sigma_a^2) / (2 sqrt(alpha) s_max C)        (M' devices transmitting)
  i.e. in gradient units the PS sees A sum_m g_m + noise of variance (sigma^2 + M' sigma_a^2) / alpha.
  On fading channels alpha_m = alpha h_m^2 (truncated inversion keeps ||x_m||^2 <= P), so Delta carries max_m h_m.
* Without clipping (the paper's per-device alpha_m): ||u_m|| = sqrt(P) exactly whatever the data, so
  Delta = 2 sqrt(P) (power_norm "sparse": ||u_m|| <= s_max sqrt(P), Delta = 2 s_max sqrt(P)).
  Uncoded analog likewise has ||u_m|| = sqrt(P).

D-DSGD (digital, TSP Sec. III) and the error-free link: the PS decodes each device's message by itself, so only the
device's own noise protects it (local DP): the device clips its update to C and adds N(0, sigma_d^2 I_d) before
error compensation and quantization (both then post-processing), z_D = sigma_d / (2 C). Without clipping and noise
the release is exact: epsilon = inf.

Aggregation is what the air buys: to reach the same z, each A-DSGD device adds sigma_a^2 = (sigma_tot^2 - sigma^2)/M'
(nothing when the receiver noise already suffices), while each D-DSGD device adds all of sigma_d^2 itself.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

#: relative safety margin on the Lanczos estimate of ||A||_2 (converged to 1e-7; the margin keeps the bound on the
#: safe side of the true value)
SPECTRAL_MARGIN = 1e-3


def clip_rows(v: torch.Tensor, clip: float) -> torch.Tensor:
    """Rows of v float32[M, n] scaled to L2 norm <= clip (in place; returns v)."""
    if not clip > 0:
        raise ValueError(f"clip = {clip}: expected > 0")
    norm = torch.linalg.vector_norm(v, dim=1)
    v.mul_(torch.clamp(clip / norm.clamp_min(1e-30), max=1.0)[:, None])
    return v


def spectral_norm(a: torch.Tensor, tol: float = 1e-7) -> float:
    """Upper estimate of ||A||_2 for a float32[r, n]: the largest singular value from scipy's Lanczos (ARPACK
    ``svds``, a few dozen products with A and A^T instead of an SVD: ~3 s at 3,924 x 7,850 on one core), times
    (1 + SPECTRAL_MARGIN) to stay above the true value."""
    from scipy.sparse.linalg import svds
    x = a.detach().numpy().astype(np.float64, copy=False)
    if min(x.shape) < 3:  # ARPACK needs k < min(shape); tiny matrices: exact SVD
        return float(np.linalg.svd(x, compute_uv=False)[0]) * (1 + SPECTRAL_MARGIN)
    sigma = svds(x, k=1, tol=tol, return_singular_vectors=False, random_state=0)
    return float(sigma[0]) * (1 + SPECTRAL_MARGIN)


@lru_cache(maxsize=4)
def projection_spectral_norm(rows: int, d: int, seed: int) -> float:
    """||A_{rows}||_2 of the shared A-DSGD projection (learning.feel.schemes.gaussian_projection), cached."""
    from learning.feel.schemes import gaussian_projection
    return spectral_norm(gaussian_projection(rows, d, seed))


def adsgd_alpha(power: float, clip: float, s_max: float) -> float:
    """Common power scaling with clipping: alpha = P / (s_max^2 C^2 + 1) (every device meets ||x_m||^2 <= P)."""
    return power / (s_max ** 2 * clip ** 2 + 1.0)


def analog_sensitivity(power: float, clip: float | None, s_max: float, power_norm: str = "projected",
                       gain_max: float = 1.0) -> float:
    """L2 sensitivity (replace one device) of what the PS receives from an analog scheme (module docstring).

    gain_max: the largest channel amplitude h_m among the devices transmitting (1 on AWGN): with alpha_m carrying
    h_m^2 (truncated inversion, TWC 2020) device m arrives with norm h_m times its AWGN norm."""
    if clip is not None:
        return 2.0 * gain_max * math.sqrt(adsgd_alpha(power, clip, s_max)) * s_max * clip
    return 2.0 * gain_max * math.sqrt(power) * (s_max if power_norm == "sparse" else 1.0)


def analog_noise_multiplier(noise_var: float, artificial_var: float, n_devices: int, sensitivity: float) -> float:
    """z_A = sqrt(sigma^2 + M' sigma_a^2) / Delta."""
    return math.sqrt(noise_var + n_devices * artificial_var) / sensitivity


def artificial_noise_var(target_multiplier: float, noise_var: float, n_devices: int, sensitivity: float) -> float:
    """Per-device artificial noise variance sigma_a^2 so that M' devices plus the receiver reach z (0 when the
    receiver noise already does)."""
    if n_devices < 1:
        return 0.0
    return max(0.0, (target_multiplier * sensitivity) ** 2 - noise_var) / n_devices
