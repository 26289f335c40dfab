"""FEEL aggregation schemes: error-free, A-DSGD (analog, over the air), D-DSGD (digital) and uncoded analog.

Each scheme has a device-side ``encode`` (batched over the M devices given: one tensor computation, no Python loop
per device) and a server-side ``decode``. Notation of Amiri & Gündüz, "Machine learning at the wireless edge:
distributed stochastic gradient descent over-the-air", IEEE TSP 2020 (below "TSP"), and "Federated learning over
wireless fading channels", IEEE TWC 2020 (below "TWC"):

* d model size, M devices, s real channel uses per round, P_t energy per device per round over those s uses
  (constraint (1/T) sum_t ||x_m(t)||^2 <= P-bar, TSP Sec. II; here P_t = P-bar every round), sigma^2 noise variance.
* g_m(theta_t) local gradient; Delta_m(t) error accumulator; g_m^ec = g_m + Delta_m (TSP Sec. III and IV).

Error-free ("ideal"): the server gets (1/M) sum_m g_m exactly (TSP Sec. VI "error-free shared link").

A-DSGD ("analog", TSP Sec. IV, Algorithm 2):
    g_m^sp = sp_k(g_m^ec)                   keep the k entries of largest magnitude
    Delta_m(t+1) = g_m^ec - g_m^sp
    g~_m = A_{s-1} g_m^sp                   A_{s-1} in R^{(s-1) x d}, entries N(0, 1/(s-1)), pseudo-random from a seed
                                            shared by devices and server (one batched matmul for all devices)
    x_m = [sqrt(alpha_m) g~_m ; sqrt(alpha_m)] / h_m,   alpha_m = P_t h_m^2 / (||g~_m||^2 + 1)
                                            so ||x_m||^2 = P_t exactly; the last channel use carries the scale.
                                            (h_m = 1 on AWGN; truncated inversion on fading, TWC Sec. III.)
                                            The simulation never forms the M rows x_m: the air adds them and A is
                                            linear, so sum_m h_m x_m = [A sum_m c_m g_m^sp ; sum_m c_m] with
                                            c_m = sqrt(alpha_m): ONE projection per round (LinearSymbols). Only the
                                            norms ||g~_m|| need per-device products; power_norm="sparse" replaces
                                            them by ||g_m^sp|| (= E_A ||A g_m^sp||), P_t then holds on average.
    server: y = sum_m h_m x_m + z;  y_{s-1} / y_s ~= A_{s-1} sum_m w_m g_m^sp,
            w_m = sqrt(alpha_m) / sum_j sqrt(alpha_j)
            and AMP recovers sum_m w_m g_m^sp (TSP Sec. IV-B), the weighted average of the sparse updates
            (soft-threshold AMP with SURE-tuned threshold and gain, learning.feel.amp).

D-DSGD ("digital", TSP Sec. III, Algorithm 1):
    R_t = s/(2M) log2(1 + M P_t / (s sigma^2))  bits per device: an equal share of the Gaussian MAC sum capacity
                                            with power P_t/s per channel use (TSP Sec. III); on fading the received
                                            powers P_t h_m^2 of the active devices replace M P_t.
    q_t = max{q : log2 C(d, q) + 33 <= R_t}  (positions + 32-bit mean + 1 sign bit, TSP Sec. III)
    top-q mean/sign quantization: mu+ = mean of the q largest entries of g_m^ec, mu- = mean of the q smallest;
    if mu+ > |mu-| send mu+ at the q largest positions, else mu- at the q smallest; Delta_m(t+1) = g_m^ec - g^q_m.
    server: (1/M') sum_m g^q_m over the M' messages received.

Uncoded analog ("uncoded", s >= d + 1): x_m = [sqrt(alpha_m) g_m ; sqrt(alpha_m) ; 0...] / h_m with
    alpha_m = P_t h_m^2 / (||g_m||^2 + 1); server: y_{1..d} / y_{d+1}. No sparsification, no error accumulation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np
import torch
from scipy.special import gammaln

from learning.feel.amp import amp_recover
from learning.feel.channel import LinearSymbols, Reception
from learning.feel.messages import Aggregate, Transmission
from learning.feel.sparsify import error_feedback_top_k, top_k_payload  # noqa: F401  (top_k_payload: public here)
from learning.privacy.mechanism import adsgd_alpha, clip_rows, projection_spectral_norm

SCHEMES = ("analog", "digital", "ideal", "uncoded")
#: A-DSGD power normalisations: "projected" alpha_m from ||A g_sp||^2 (TSP Sec. IV, exact ||x_m||^2 = P_t),
#: "sparse" alpha_m from ||g_sp||^2 = E_A ||A g_sp||^2 (no per-device projection; ||x_m||^2 = P_t on average)
POWER_NORMS = ("projected", "sparse")
#: rows per chunk when the encoder projects devices' updates only for their norms (bounds memory at large M)
NORM_CHUNK_ROWS = 1024
#: D-DSGD overhead per message: 32 bits for the mean value and 1 sign bit (TSP Sec. III)
DDSGD_OVERHEAD_BITS = 33
#: largest A-DSGD projection matrix built (float32 bytes)
MAX_PROJECTION_BYTES = 2 * 2**30


def ddsgd_bits_per_device(s: int, n_devices: int, power: float, noise_var: float,
                          gains: np.ndarray | None = None) -> float:
    """R_t = s/(2M) log2(1 + sum_m P_t h_m^2 / (s sigma^2)) bits per device per round (TSP Sec. III with h_m = 1).

    gains: float[M] effective amplitudes of the M transmitting devices (None: AWGN, all 1); if fewer than M are
    given (a remote device knowing only its own gain), their mean square stands in for the others'.
    """
    if n_devices < 1:
        return 0.0
    # gains of only some of the devices (a remote device knows its own): extrapolate with their mean square
    mean_sq = 1.0 if gains is None or np.size(gains) == 0 else float(np.mean(np.asarray(gains, np.float64) ** 2))
    rx_power = power * n_devices * mean_sq
    return s / (2.0 * n_devices) * math.log2(1.0 + rx_power / (s * noise_var))


def log2_binomial(d: int, q: np.ndarray | int) -> np.ndarray:
    """log2 C(d, q) via log-gamma, vectorized over q."""
    q = np.asarray(q, np.float64)
    return (gammaln(d + 1.0) - gammaln(q + 1.0) - gammaln(d - q + 1.0)) / math.log(2.0)


def ddsgd_sparsity(d: int, bits: float) -> int:
    """q_t = max{q in [0, d/2] : log2 C(d, q) + 33 <= bits} (TSP Sec. III); 0 when not even one entry fits."""
    q = np.arange(1, d // 2 + 1)
    fits = log2_binomial(d, q) + DDSGD_OVERHEAD_BITS <= bits
    return int(fits.sum())  # log2 C(d, q) is increasing on [0, d/2], so the fitting q form a prefix


def projected_sq_norms(sparse: torch.Tensor, projection: torch.Tensor, chunk: int = NORM_CHUNK_ROWS) -> torch.Tensor:
    """||A v_m||^2 for every row of v float32[M, d] with A float32[r, d]: float32[M] (chunks of ``chunk`` rows, so
    the [chunk, r] products stay small). Costs one projection per device: O(M r d)."""
    out = torch.empty(sparse.shape[0], dtype=torch.float32)
    for start in range(0, sparse.shape[0], chunk):
        p = sparse[start:start + chunk] @ projection.T
        out[start:start + chunk] = (p * p).sum(1)
    return out


def top_k_sparsify(v: torch.Tensor, k: int) -> torch.Tensor:
    """sp_k: keep the k entries of largest magnitude in every row of v float32[M, d]; float32[M, d]."""
    if k >= v.shape[1]:
        return v.clone()
    idx = v.abs().topk(k, dim=1).indices
    return torch.zeros_like(v).scatter_(1, idx, v.gather(1, idx))


def mean_sign_quantize(v: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """D-DSGD's top-q mean/sign quantizer on rows of v float32[M, d] (TSP Sec. III).

    Returns (positions int64[M, q], values float32[M], quantized float32[M, d]).
    """
    m, d = v.shape
    if q == 0:
        return (torch.zeros(m, 0, dtype=torch.int64), torch.zeros(m), torch.zeros_like(v))
    top_val, top_idx = v.topk(q, dim=1)
    bot_val, bot_idx = (-v).topk(q, dim=1)
    mu_pos, mu_neg = top_val.mean(1), -bot_val.mean(1)
    positive = mu_pos > mu_neg.abs()
    positions = torch.where(positive[:, None], top_idx, bot_idx)
    values = torch.where(positive, mu_pos, mu_neg)
    quantized = torch.zeros_like(v).scatter_(1, positions, values[:, None].expand(m, q).contiguous())
    return positions, values, quantized


@lru_cache(maxsize=2)
def gaussian_projection(rows: int, d: int, seed: int) -> torch.Tensor:
    """The shared pseudo-random matrix A_{rows} float32[rows, d], entries N(0, 1/rows), from ``seed`` alone, so every
    device and the server regenerate the same matrix (TSP Sec. IV)."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(rows, d, generator=gen, dtype=torch.float32).div_(math.sqrt(rows))


class Scheme(ABC):
    """A FEEL aggregation scheme: device-side ``encode`` and server-side ``decode``.

    ``over_the_air``: True if the payload is superposed on the channel (analog symbols), False if it travels as bits
    (digital) or exactly (ideal).
    """

    name: str = ""
    over_the_air: bool = False
    uses_error_feedback: bool = False

    def __init__(self, d: int, channel_uses: int, power: float, noise_var: float = 1.0):
        if d < 1:
            raise ValueError(f"d = {d}: expected the model size >= 1")
        if channel_uses < 2:
            raise ValueError(f"channel_uses = {channel_uses}: expected >= 2 (s - 1 projections plus the scale)")
        if not power > 0:
            raise ValueError(f"power = {power}: expected P-bar > 0")
        self.d, self.s, self.power, self.noise_var = int(d), int(channel_uses), float(power), float(noise_var)

    @abstractmethod
    def encode(self, ec: torch.Tensor, csi_gain: torch.Tensor,
               n_transmitting: int) -> tuple[Transmission, torch.Tensor]:
        """Device side. ec: float32[M, d] error-compensated updates g_m + Delta_m of the devices that transmit;
        csi_gain: float32[M] their channel amplitudes h_m; n_transmitting: M' devices sharing the channel.
        Returns (transmission with ids left empty for the caller to fill, new error accumulators float32[M, d])."""

    def encode_feedback(self, update: torch.Tensor, error: torch.Tensor | None, csi_gain: torch.Tensor,
                        n_transmitting: int, out_error: torch.Tensor | None = None,
                        out_payload: torch.Tensor | None = None) -> tuple[Transmission, torch.Tensor]:
        """Device side with the error compensation folded in: :meth:`encode` of g_m + Delta_m.

        update, error: float32[M, d] (error None: none); out_error, out_payload: optional buffers a scheme may write
        the new accumulators float32[M, d] and its payload into instead of allocating (never aliasing ``update`` or
        ``error``; the caller keeps neither past the round). Same returns as :meth:`encode`."""
        ec = update + error if self.uses_error_feedback and error is not None else update
        return self.encode(ec, csi_gain, n_transmitting)

    @abstractmethod
    def decode(self, received: Transmission | Reception, n_received: int) -> Aggregate:
        """Server side: the estimate of the average update from what arrived."""

    def air_time(self, symbol_rate: float) -> float:
        """Seconds of air per round at ``symbol_rate`` real channel uses per second."""
        return self.s / symbol_rate


class IdealScheme(Scheme):
    """Error-free shared link: the server receives every g_m exactly and averages them."""

    name = "ideal"

    def encode(self, ec, csi_gain, n_transmitting):
        ones = torch.ones(ec.shape[0])
        return Transmission(torch.zeros(0, dtype=torch.int64), ones, ec, vectors=ec.clone()), torch.zeros_like(ec)

    def decode(self, received, n_received):
        if n_received == 0:
            return Aggregate(torch.zeros(self.d), ok=False, info={"reason": "no device"})
        return Aggregate(received.vectors.mean(0))

    def air_time(self, symbol_rate):
        return 0.0


class AnalogScheme(Scheme):
    """A-DSGD: error accumulation, top-k, shared Gaussian projection to s - 1 uses, power scaling with the scale in
    the s-th channel use, superposition, AMP at the server (module docstring; TSP Algorithm 2)."""

    name = "analog"
    over_the_air = True
    uses_error_feedback = True

    def __init__(self, d, channel_uses, power, noise_var=1.0, k: int | None = None, seed: int = 0,
                 amp_iterations: int = 10, amp_threshold: str | float = "sure-scaled", power_norm: str = "projected",
                 clip: float | None = None):
        super().__init__(d, channel_uses, power, noise_var)
        if clip is not None and not clip > 0:
            raise ValueError(f"clip = {clip}: expected > 0 (or None: no clipping)")
        self.clip = None if clip is None else float(clip)
        self.k = (channel_uses // 2) if k is None else int(k)
        if not 1 <= self.k <= d:
            raise ValueError(f"k = {self.k}: expected 1 <= k <= d = {d}")
        if power_norm not in POWER_NORMS:
            raise ValueError(f"power_norm = {power_norm!r}: expected one of {', '.join(POWER_NORMS)}")
        self.seed, self.amp_iterations, self.amp_threshold = int(seed), int(amp_iterations), amp_threshold
        self.power_norm = power_norm
        size = 4 * (self.s - 1) * self.d
        if size > MAX_PROJECTION_BYTES:
            raise ValueError(f"channel_uses = {self.s}: the projection matrix would take {size / 2**30:.1f} GiB "
                             f"((s-1) x d = {self.s - 1} x {self.d} float32); expected at most "
                             f"{MAX_PROJECTION_BYTES / 2**30:.0f} GiB, so use fewer channel uses")

    @property
    def projection(self) -> torch.Tensor:
        """A_{s-1}: float32[s-1, d] (cached; regenerated identically from the shared seed anywhere)."""
        return gaussian_projection(self.s - 1, self.d, self.seed)

    @property
    def spectral_norm(self) -> float:
        """||A_{s-1}||_2 (upper estimate, cached): bounds ||A g|| <= ||A||_2 ||g|| for the clipped power scaling."""
        return projection_spectral_norm(self.s - 1, self.d, self.seed)

    def radiate(self, payload: torch.Tensor) -> torch.Tensor:
        """The linear map every device applies: [g; c] float32[..., d+1] -> [A g; c] float32[..., s]."""
        return torch.cat([payload[..., :self.d] @ self.projection.T, payload[..., self.d:]], dim=-1)

    def encode(self, ec, csi_gain, n_transmitting):
        """Symbols in factored form (:class:`LinearSymbols`): x_m = (sqrt(alpha_m)/h_m) [A g_sp_m; 1]; the channel
        superposes them with one projection of the weighted sum (A is linear). ``power_norm`` "projected":
        alpha_m = P h_m^2 / (||A g_sp_m||^2 + 1) (TSP Sec. IV; the norms cost one projection per device, chunked);
        "sparse": alpha_m = P h_m^2 / (||g_sp_m||^2 + 1), since E_A||A g||^2 = ||g||^2 for entries N(0, 1/(s-1)):
        no per-device projection, ||x_m||^2 = P (||A g_sp||^2 + 1)/(||g_sp||^2 + 1), P on average (chi-square with
        s-1 degrees of freedom: relative spread sqrt(2/(s-1)))."""
        return self.encode_feedback(ec, None, csi_gain, n_transmitting)

    def encode_feedback(self, update, error, csi_gain, n_transmitting, out_error=None, out_payload=None):
        """:meth:`encode` of g_ec = update + error in one fused pass per device (error-compensated top-k,
        :func:`learning.feel.sparsify.error_feedback_top_k`); ``error`` None: update is g_ec already."""
        payload, new_error, norm2 = error_feedback_top_k(update, error, self.k, out_error, out_payload)
        sparse = payload[:, :self.d]
        if self.clip is not None:
            new_error.add_(sparse)                 # back to g_ec at the kept entries ...
            clip_rows(sparse, self.clip)           # ||g_sp|| <= C before projection (learning.privacy.mechanism)
            new_error.sub_(sparse)                 # ... and g_ec - clipped g_sp there (exactly as ec - sparse)
            norm2 = (sparse * sparse).sum(1)
        if self.power_norm == "projected":
            norm2 = projected_sq_norms(sparse, self.projection)
        if self.clip is None:
            alpha = self.power * csi_gain ** 2 / (norm2 + 1.0)
        else:  # data-independent scaling: P h^2 / (||A||_2^2 C^2 + 1), meets the power limit for every device
            alpha = csi_gain ** 2 * adsgd_alpha(self.power, self.clip, self.spectral_norm)
        amp = alpha.sqrt() / csi_gain                                            # pre-equalised amplitude
        # ||x_m||^2 = amp^2 (||A g_sp||^2 + 1): exact when projected, its expectation over A with power_norm "sparse"
        energy = amp * amp * (norm2 + 1.0)
        linear = LinearSymbols(amp, payload, self.radiate, energy)
        tx = Transmission(torch.zeros(0, dtype=torch.int64), alpha.sqrt(), sparse, linear=linear)
        return tx, new_error

    def decode(self, received: Reception, n_received):
        scale = float(received.y[-1])
        # the scale symbol must stand clear of the noise: 3 sigma of the scale channel use
        if n_received == 0 or scale <= 3.0 * math.sqrt(max(received.noise_var, 1e-30)):
            return Aggregate(torch.zeros(self.d), ok=False, info={"reason": f"scale symbol {scale:.3g} below noise"})
        result = amp_recover(received.y[:-1] / scale, self.projection, self.amp_iterations, self.amp_threshold,
                             tol=1e-3)
        return Aggregate(result.x, info={"amp_iterations": result.iterations, "scale_symbol": scale})


class DigitalScheme(Scheme):
    """D-DSGD: capacity bit budget, top-q mean/sign quantization with positions, error accumulation (TSP Alg. 1)."""

    name = "digital"
    uses_error_feedback = True

    def budget(self, n_transmitting: int, gains: torch.Tensor | None = None) -> tuple[float, int]:
        """(R_t bits per device, q_t) for n_transmitting devices (gains: their amplitudes, None on AWGN)."""
        bits = ddsgd_bits_per_device(self.s, n_transmitting, self.power, self.noise_var,
                                     None if gains is None else gains.double().numpy())
        return bits, ddsgd_sparsity(self.d, bits)

    def encode(self, ec, csi_gain, n_transmitting):
        bits, q = self.budget(n_transmitting, csi_gain)
        positions, values, quantized = mean_sign_quantize(ec, q)
        tx = Transmission(torch.zeros(0, dtype=torch.int64), torch.ones(ec.shape[0]), quantized,
                          positions=positions, values=values, bits=bits)
        return tx, ec - quantized

    def decode(self, received: Transmission, n_received):
        if n_received == 0:
            return Aggregate(torch.zeros(self.d), ok=False, info={"reason": "no device"})
        m, q = received.positions.shape
        total = torch.zeros(self.d).index_add_(0, received.positions.reshape(-1),
                                               received.values[:, None].expand(m, q).reshape(-1))
        return Aggregate(total / n_received, info={"q": q, "bits_per_device": received.bits})


class UncodedScheme(Scheme):
    """Plain analog averaging for wide channels (s >= d + 1): every entry on its own channel use, scale in use d+1."""

    name = "uncoded"
    over_the_air = True

    def __init__(self, d, channel_uses, power, noise_var=1.0):
        super().__init__(d, channel_uses, power, noise_var)
        if channel_uses < d + 1:
            raise ValueError(f"channel_uses = {channel_uses}: uncoded analog needs s >= d + 1 = {d + 1}")

    def encode(self, ec, csi_gain, n_transmitting):
        alpha = self.power * csi_gain ** 2 / ((ec * ec).sum(1) + 1.0)
        amp = alpha.sqrt() / csi_gain
        symbols = torch.zeros(ec.shape[0], self.s)
        symbols[:, :self.d] = ec * amp[:, None]
        symbols[:, self.d] = amp
        tx = Transmission(torch.zeros(0, dtype=torch.int64), alpha.sqrt(), ec, symbols=symbols)
        return tx, torch.zeros_like(ec)

    def decode(self, received: Reception, n_received):
        scale = float(received.y[self.d])
        if n_received == 0 or scale <= 3.0 * math.sqrt(max(received.noise_var, 1e-30)):
            return Aggregate(torch.zeros(self.d), ok=False, info={"reason": f"scale symbol {scale:.3g} below noise"})
        return Aggregate(received.y[:self.d] / scale, info={"scale_symbol": scale})


def make_scheme(name: str, d: int, channel_uses: int, power: float, noise_var: float = 1.0, k: int | None = None,
                seed: int = 0, amp_iterations: int = 10, amp_threshold: str | float = "sure-scaled",
                power_norm: str = "projected", clip: float | None = None) -> Scheme:
    """Build a scheme by name (see :data:`SCHEMES`)."""
    if name == "analog":
        return AnalogScheme(d, channel_uses, power, noise_var, k=k, seed=seed, amp_iterations=amp_iterations,
                            amp_threshold=amp_threshold, power_norm=power_norm, clip=clip)
    if name == "digital":
        return DigitalScheme(d, channel_uses, power, noise_var)
    if name == "ideal":
        return IdealScheme(d, channel_uses, power, noise_var)
    if name == "uncoded":
        return UncodedScheme(d, channel_uses, power, noise_var)
    raise ValueError(f"scheme {name!r}: unknown; expected one of {', '.join(SCHEMES)}")
