"""The radio path of FEEL: a :class:`learning.feel.channel.SumChannel` over a :class:`sync.procedure.SyncSession`.

Each round, the devices' real symbols ``x`` float32[M, s] are paired into complex OFDM data values
(x[2i] + j x[2i+1], zero-padded to an even length, as ``phy.analog`` pairs them). All connected devices send them at
once in the session's data slot, with timing advance, CFO pre-rotation and truncated channel inversion
(``X_k = alpha x_k / H_k``). The PS divides by ``alpha`` and the pairs are unfolded back into y float32[s]. The
PS's noise estimate for the complex values (noise_var / alpha^2) becomes noise_var / 2 per real value.

A device that the session's inversion silenced, or that failed access, is simply missing from the sum, like a
drop-out. A-DSGD's scale symbol only counts the devices that were on air. A round whose estimate is not finite
(no active device, alpha undefined) is reported with infinite noise variance. The scheme's decoder then rejects it
and the round is skipped.

The session owns its devices' power budget: ``SyncConfig.power`` per subcarrier for unit-power symbols. A-DSGD rows
have energy P over s real values, i.e. 2P/s per complex value, so ``--power s/2`` gives unit-power symbols.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from learning.feel.channel import Reception, RoundCsi


class RadioSumChannel:
    """``session``: a SyncSession whose devices have finished random access (``session.access()``);
    ``channel_uses``: s, the real values per device and round (must fit into session.data_symbols OFDM symbols).
    ``symbol_rate``: real channel uses per second of the data slot (2 x data subcarriers per OFDM symbol time)."""

    def __init__(self, session, channel_uses: int):
        of = session.ofdm
        capacity = 2 * session.data_symbols * of.n_data
        if channel_uses > capacity:
            raise ValueError(f"channel_uses = {channel_uses} real values do not fit into {session.data_symbols} OFDM "
                             f"symbols x {of.n_data} data subcarriers x 2 = {capacity}; expected a session with "
                             f"data_symbols >= {math.ceil(channel_uses / (2 * of.n_data))}")
        self.session = session
        self.s = int(channel_uses)
        self.n_devices = session.k
        self.noise_var = math.nan
        self.symbol_rate = 2.0 * of.n_data * session.fs / of.symbol_len
        self.rounds_failed = 0
        self.last_error = ""

    def __repr__(self) -> str:
        return (f"RadioSumChannel(devices={self.n_devices}, s={self.s}, data_symbols={self.session.data_symbols}, "
                f"ofdm={self.session.ofdm.fft_size}-point)")

    def csi(self, round: int) -> RoundCsi:
        """Devices pre-equalize inside the session (common alpha); to the scheme every device looks like gain 1."""
        m = self.n_devices
        return RoundCsi(round, torch.ones(m), torch.ones(m, dtype=torch.bool))

    def transmit(self, x: torch.Tensor, csi: RoundCsi) -> Reception:
        """x float32[M, s] -> Reception(y float32[s], noise_var per real value, energy float32[M])."""
        if x.dim() != 2 or x.shape[0] != self.n_devices or x.shape[1] != self.s:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected [{self.n_devices}, {self.s}]")
        rows = (x * csi.active[:, None].to(x.dtype)).double().numpy()
        if self.s % 2:
            rows = np.concatenate([rows, np.zeros((rows.shape[0], 1))], axis=1)
        values = (rows[:, 0::2] + 1j * rows[:, 1::2]).astype(np.complex64)
        try:
            res = self.session.data_round(values)
        except (IndexError, ValueError, RuntimeError) as exc:  # a failed air round is counted, never a crash
            self.rounds_failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return Reception(y=torch.zeros(self.s), noise_var=math.inf, energy=torch.zeros(self.n_devices))
        est = np.asarray(res.estimate)
        y = np.empty(2 * est.size, np.float32)
        y[0::2], y[1::2] = est.real, est.imag
        noise_var = float(res.noise_var) / 2.0
        if not (np.all(np.isfinite(y)) and math.isfinite(noise_var)):
            self.rounds_failed += 1
            y, noise_var = np.zeros_like(y), math.inf
        self.noise_var = noise_var
        energy = (x.double() ** 2).sum(1).float() * csi.active.float()
        return Reception(y=torch.from_numpy(y[:self.s]), noise_var=noise_var, energy=energy)


def loopback_session(n_devices: int, channel_uses: int, snr_db: float = 20.0, seed: int = 0, preset: str = "wifi64",
                     sample_rate: float = 20e6, center_freq: float = 2.4e9, max_delay_cp: float = 2.0,
                     cfo_ppm: float = 2.0):
    """An in-process air with a PS and ``n_devices`` loopback radios (random delays of up to ``max_delay_cp`` cyclic
    prefixes and carrier offsets of up to ``cfo_ppm``, AWGN at ``snr_db`` per subcarrier), and a SyncSession on it
    that has finished random access. Returns the session."""
    from phy.ofdm import OfdmConfig
    from radio.air import Air
    from radio.channel import LinkParams
    from radio.loopback import LoopbackRadio
    from sync.config import SyncConfig
    from sync.procedure import SyncSession

    of = OfdmConfig.preset(preset, sample_rate=sample_rate)
    rng = np.random.default_rng([seed, 41])
    air = Air(sample_rate, center_freq, seed=seed)
    n0 = 10 ** (-snr_db / 10)
    air.add_endpoint("ps", noise_power=n0)
    names = [f"dev{i}" for i in range(n_devices)]
    for nm in names:
        air.add_endpoint(nm, noise_power=n0 / 10)
    delays = rng.uniform(0, max_delay_cp * of.cp_len, n_devices)
    ppm = rng.uniform(-cfo_ppm, cfo_ppm, n_devices)
    for i, a in enumerate(names):
        for b in names:
            if a != b:
                air.set_link(a, b, None)
        air.set_link("ps", a, LinkParams(delay_samples=float(delays[i]), cfo_ppm=-ppm[i]))
        air.set_link(a, "ps", LinkParams(delay_samples=float(delays[i]), cfo_ppm=ppm[i]))
    ps = LoopbackRadio(air, "ps")
    radios = [LoopbackRadio(air, nm) for nm in names]
    data_symbols = math.ceil(channel_uses / (2 * of.n_data))
    cfg = SyncConfig(cell_radius_m=max_delay_cp * of.cp_len / sample_rate * 3e8 * 1.2)
    session = SyncSession(ps, radios, of, cfg, preambles=list(range(1, n_devices + 1)), data_symbols=data_symbols,
                          rng=np.random.default_rng([seed, 42]))
    session.access()
    return session
