"""Over-the-air sums on real waveforms: a FEEL :class:`~learning.feel.channel.SumChannel` over a synchronized cell.

:class:`RadioSumChannel` serves the FEEL schemes' rounds with :meth:`sync.procedure.SyncSession.data_round` on any set
of :class:`radio.base.Radio` objects (the in-process air, ZeroMQ endpoints, hardware): every FEEL round is beacon →
code-multiplexed uplink pilots → CSI feedback (truncated channel inversion) → one OFDM data burst in which all
active devices transmit at once, and the parameter server (PS) receives their sum.

Mapping of the M devices' real symbols x float32[M, s] onto the OFDM data subcarriers::

    u_m[i] = c · (x_m[2i] + j x_m[2i+1]),   i = 0 … ⌈s/2⌉-1  (x padded with one zero when s is odd)
    c      = sqrt(⌈s/2⌉ / P_t)

The schemes scale each device's row to ‖x_m‖² = P_t (its energy per round over the s uses), so
mean_i |u_m[i]|² = c² P_t / ⌈s/2⌉ = 1: the per-subcarrier power the OFDM chain and the truncated inversion's
budget (``SyncConfig.power`` per unit-power symbol) are designed for. ``c`` is fixed by ``power`` and
``channel_uses`` at construction, never adapted to the data, so the PS can undo it. The PS's estimate v̂[i] of
Σ_m u_m[i] (over the devices that transmitted) is unpaired back to reals, ŷ[2i] = Re v̂[i] / c,
ŷ[2i+1] = Im v̂[i] / c, and its noise variance per real symbol in the schemes' units is

    σ²_real = N_c / (2 c²),   N_c = the session's noise variance per complex data symbol (N0 / alpha²)

(circular complex noise splits evenly between real and imaginary parts). If s needs more than one burst, the values
are carried by consecutive data rounds (``data_symbols`` OFDM symbols each) and N_c is their mean. N_c is the PS's
estimate of *thermal* noise; errors of the pre-equalization (noisy uplink CSI, 8-bit feedback) add to it in
proportion to the signal, so the real error is larger (measured: 1.1–1.8× on the in-process air).
:meth:`RadioSumChannel.calibrate` measures the total, ``effective_noise_var``, with probe symbols the PS knows.

Channel state: the session inverts each device's channel itself, so :meth:`RadioSumChannel.csi` reports gain 1 for
the devices it expects to transmit and marks inactive those the session excluded (no beacon, random access failed) or
that truncated inversion silenced at the last channel refresh. The refresh of round t happens inside
``data_round``, after the schemes have encoded, so the active set is predicted from the previous refresh (channels
are static between rounds on the in-process air); a device that the new refresh silences anyway is counted in
``stats["mismatch"]`` and its contribution is missing from that round's sum (its energy is reported as 0); so is
a device that misses its CSI feedback (it then stays silent rather than use stale CSI).

A round whose estimate is not finite (bad data from the air) is counted in ``stats["non_finite"]`` and returned as
y = 0 with infinite noise variance, which every over-the-air scheme's decoder rejects.

:func:`sum_channel` builds a whole cell on the in-process air (or over ZeroMQ) — K devices with random one-way delays, clock
offsets, carrier and sampling-clock offsets and multipath, as :func:`lab.factory.build_cell` places them — runs random access and
timing advance once, calibrates with known probe rounds (:meth:`RadioSumChannel.calibrate`) and returns the channel
ready to serve rounds, with the simulation's truth attached so that :meth:`RadioSumChannel.sync_report` can
measure the residual timing and CFO errors.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lab.factory import (DEFAULT_BIND, CellTruth, Scenario, build_cell, cell_truth, config_cell, new_session)
from learning.feel.channel import Reception, RoundCsi
from phy.ofdm import OfdmConfig
from sync.config import SyncConfig
from sync.precomp import truncated_inversion
from sync.procedure import SyncSession

#: largest number of OFDM data symbols the builder puts into one data burst (longer vectors use several bursts)
MAX_DATA_SYMBOLS = 64


class RadioSumChannel:
    """A :class:`learning.feel.channel.SumChannel` over a :class:`sync.procedure.SyncSession` (module docstring).

    Args:
        session: a session whose ``access()`` has run (devices connected or excluded).
        power: P_t, each device's energy per round over ``channel_uses`` real symbols (the FEEL config's power).
        channel_uses: s, real symbols per round; with ``power`` it fixes the scale c = sqrt(⌈s/2⌉ / P_t).
        truth: the simulation's truth for :meth:`sync_report` (None on hardware: no residual-error metrics).

    Attributes: ``n_devices`` (K), ``noise_var`` (the PS's estimate of σ²_real in the latest round),
    ``effective_noise_var`` (measured total error per real symbol, set by :meth:`calibrate`),
    ``symbol_rate`` (real symbols per second during the data bursts: 2·n_data·fs/symbol_len), ``scale`` (c),
    ``history`` (one dict per FEEL round), ``stats`` (counters).
    """

    def __init__(self, session: SyncSession, power: float, channel_uses: int, *, truth: CellTruth | None = None):
        if not (math.isfinite(power) and power > 0):
            raise ValueError(f"power = {power!r}: expected P_t > 0 (energy per device per round)")
        if isinstance(channel_uses, bool) or not isinstance(channel_uses, (int, np.integer)) or channel_uses < 1:
            raise ValueError(f"channel_uses = {channel_uses!r}: expected an integer s >= 1")
        self.session = session
        self.truth = truth
        self.power = float(power)
        self.channel_uses = int(channel_uses)
        self.n_devices = session.k
        of = session.ofdm
        self.scale = math.sqrt(math.ceil(self.channel_uses / 2) / self.power)
        self.symbol_rate = 2.0 * of.n_data * session.fs / of.symbol_len
        self.noise_var = float("nan")
        #: air time per phase kind booked before this channel served any round (access), in samples
        self.access_air_time = dict(session.air_time)
        self.history: list[dict] = []
        self.stats = {"rounds": 0, "bursts": 0, "non_finite": 0, "mismatch": 0}
        self._timing: list[dict] = []
        self._nmse: list[dict] = []

    def __repr__(self) -> str:
        return (f"RadioSumChannel(n_devices={self.n_devices}, power={self.power:g}, channel_uses={self.channel_uses}, "
                f"scale={self.scale:.4g}, data_symbols={self.session.data_symbols}, noise_var={self.noise_var:.4g})")

    # ------------------------------------------------------------------ SumChannel protocol
    def expected_active(self) -> np.ndarray:
        """bool[K]: connected, not excluded, and active in the last truncated-inversion plan (if there is one)."""
        plan = self.session.plan
        return np.array([d.state == "connected" and d.excluded is None and (plan is None or bool(plan.active[i]))
                         for i, d in enumerate(self.session.devices)], dtype=bool)

    def csi(self, round: int) -> RoundCsi:
        """Gain 1 for the devices expected to transmit (the session pre-equalizes their channels), inactive others."""
        active = self.expected_active()
        return RoundCsi(int(round), torch.ones(self.n_devices, dtype=torch.float32), torch.from_numpy(active))

    def transmit(self, x: torch.Tensor, csi: RoundCsi) -> Reception:
        """Carry x float32[K, s] (rows of devices with ``csi.active`` False are sent as zeros) as one or more
        over-the-air sums; returns ŷ float32[s] ≈ Σ_m x_m + z and σ²_real (module docstring). An s other than
        ``channel_uses`` is carried with the same scale c (its subcarrier power is then not 1 on average)."""
        if x.dim() != 2 or x.shape[0] != self.n_devices or x.shape[1] < 1:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected [n_devices={self.n_devices}, s >= 1]")
        xs = x.detach().to(torch.float32).cpu().numpy()
        send = csi.active.cpu().numpy().astype(bool)
        xs = np.where(send[:, None], xs, 0.0).astype(np.float32)
        s = xs.shape[1]
        if s % 2:
            xs = np.concatenate([xs, np.zeros((self.n_devices, 1), np.float32)], axis=1)
        u = (self.scale * (xs[:, 0::2] + 1j * xs[:, 1::2])).astype(np.complex64)       # [K, ⌈s/2⌉]
        of = self.session.ofdm
        cap = self.session.data_symbols * of.n_data
        est = np.zeros(u.shape[1], np.complex64)
        noise, sent_all, bursts = [], np.ones(self.n_devices, bool), []
        for a in range(0, u.shape[1], cap):
            with np.errstate(invalid="ignore", divide="ignore"):   # no device heard: NaN, counted below
                res = self.session.data_round(u[:, a:a + cap])
            est[a:a + cap] = res.estimate
            noise.append(res.noise_var)
            sent = np.zeros(self.n_devices, bool)
            sent[list(res.tx_local)] = True
            sent_all &= sent
            bursts.append(res)
            self._record_burst(res, u[:, a:a + cap])
        self.stats["bursts"] += len(bursts)
        self.stats["rounds"] += 1
        mismatch = send & ~sent_all
        self.stats["mismatch"] += int(mismatch.sum())
        n_c = float(np.mean(noise))
        ok = bool(np.all(np.isfinite(est))) and math.isfinite(n_c) and n_c > 0
        if ok:
            y = np.empty(2 * est.size, np.float32)
            y[0::2], y[1::2] = est.real / self.scale, est.imag / self.scale
            y = y[:s]
            noise_var = n_c / (2 * self.scale ** 2)
            self.noise_var = noise_var
        else:
            self.stats["non_finite"] += 1
            y = np.zeros(s, np.float32)
            noise_var = float("inf")
        last = bursts[-1]
        self.history.append({"round": int(csi.round), "bursts": len(bursts), "noise_var": noise_var,
                             "noise_var_complex": n_c, "alpha": last.alpha, "active": last.active,
                             "sent": np.flatnonzero(sent_all & send).tolist(),
                             "mismatch": np.flatnonzero(mismatch).tolist(),
                             "excluded": {str(k): v for k, v in last.excluded.items()}, "finite": ok})
        energy = torch.from_numpy((xs.astype(np.float64) ** 2).sum(1).astype(np.float32)) * torch.from_numpy(
            (sent_all & send).astype(np.float32))
        return Reception(y=torch.from_numpy(np.ascontiguousarray(y)), noise_var=noise_var, energy=energy)

    # ------------------------------------------------------------------ calibration and reports
    def calibrate(self, rounds: int = 2, seed: int = 0) -> float:
        """Probe rounds that the PS can check: every device sends pseudo-random Gaussian symbols from a generator both
        sides seed with ``(seed, round, device)``, scaled to the schemes' energy ‖x_m‖² = P_t.

        Afterwards the truncated-inversion plan exists (the first real round's ``csi`` is informed), ``noise_var`` is
        the PS's thermal-noise estimate σ²_real = N_c / (2c²) of the last probe, and ``effective_noise_var`` is the
        measured error per real symbol, mean (ŷ − Σ_m x_m)² over the devices that transmitted: thermal noise plus
        what imperfect CSI, feedback quantization and residual timing/CFO add (returned). Probe rounds are not
        counted in ``history`` nor ``stats["rounds"]``."""
        errors, n_recorded = [], len(self._nmse)
        for r in range(rounds):
            x = np.stack([np.random.default_rng([seed, r, m]).standard_normal(self.channel_uses)
                          for m in range(self.n_devices)]).astype(np.float32)
            x *= np.sqrt(self.power / np.sum(x.astype(np.float64) ** 2, axis=1, keepdims=True)).astype(np.float32)
            rec = self.transmit(torch.from_numpy(x), self.csi(-1 - r))
            h = self.history.pop()
            self.stats["rounds"] -= 1
            if h["finite"] and h["sent"]:
                errors.append(float(np.mean((rec.y.numpy().astype(np.float64) - x[h["sent"]].sum(axis=0)) ** 2)))
        del self._nmse[n_recorded:]       # the reports' NMSE is that of the FEEL rounds' sums, not of the probes
        self.effective_noise_var = float(np.mean(errors)) if errors else float("nan")
        self.calibration = {"rounds": rounds, "errors": errors, "noise_var": self.noise_var}
        return self.effective_noise_var

    def _record_burst(self, res, values: np.ndarray) -> None:
        """The sum's error (always: the session knows what the devices sent), and with a truth the residual timing
        and a genie with perfect sync and CSI beside it."""
        t = self.truth
        if t is None:
            if res.active:
                err = float(np.sum(np.abs(res.estimate - res.truth) ** 2))
                self._nmse.append({"round": getattr(self.session, "round", None), "err": err,
                                   "ref": float(np.sum(np.abs(res.truth) ** 2)), "active": res.active})
            return
        of, sess = self.session.ofdm, self.session
        for i, local in res.tx_local.items():
            e = t.arrival(local, i) - res.slot
            inside = (-sess.backoff <= e + t.span[i, 0]) and (e + t.span[i, 1] <= of.cp_len - sess.backoff)
            self._timing.append({"round": sess.round, "device": int(i), "error_samples": float(e),
                                 "inside_cp": bool(inside)})
        if not res.active:
            return
        part = np.zeros(self.n_devices, bool)
        part[res.active] = True
        plan = truncated_inversion(np.where(part[:, None], t.gains, np.nan).astype(np.complex64), sess.cfg.power,
                                   sess.cfg.gain_threshold)
        truth = values[plan.active].sum(axis=0)
        err = float(np.sum(np.abs(res.estimate - res.truth) ** 2))
        ref = float(np.sum(np.abs(res.truth) ** 2))
        # genie: y = alpha_g Σ x_k + n, so its error is n / alpha_g: expected energy N0 · n / alpha_g²
        g_err = t.noise_power * truth.size / plan.alpha ** 2 if plan.alpha > 0 else float("nan")
        self._nmse.append({"round": sess.round, "err": err, "ref": ref, "genie_err": g_err,
                           "genie_ref": float(np.sum(np.abs(truth) ** 2)), "active": res.active,
                           "excluded": {str(a): b for a, b in res.excluded.items()}})

    def sync_report(self) -> dict:
        """The session's synchronization metrics in :func:`lab.experiments.sync_trials.summarize`'s format (residual timing
        of every data burst, PRACH timing error vs CRLB, residual CFO, NMSE of the sums vs the genie, overhead),
        plus ``stats``, the nominal noise variance and the scale. Without a truth only the overhead is reported."""
        from lab.experiments.sync_trials import summarize

        sess = self.session
        base = {"stats": dict(self.stats), "noise_var": self.noise_var, "scale": self.scale,
                "effective_noise_var": self.effective_noise_var, "calibration": self.calibration,
                "data_symbols": sess.data_symbols, "devices": self.n_devices,
                "connected": [d.index for d in sess.devices if d.state == "connected"],
                "excluded_devices": {str(d.index): d.excluded for d in sess.devices if d.excluded},
                "overhead": sess.overhead()}
        if self.truth is None:
            err, ref = sum(r["err"] for r in self._nmse), sum(r["ref"] for r in self._nmse)
            base["nmse_db"] = 10 * math.log10(err / ref) if err > 0 and ref > 0 else None
            return base
        prach = []
        for i, dev in enumerate(sess.devices):
            est = sess.prach_estimates.get((dev.prach_slot, dev.preamble))
            if dev.prach_local is None or est is None:
                continue
            truth = self.truth.arrival(dev.prach_local, i) - dev.prach_slot
            prach.append({"device": i, "error_samples": float(est - truth), "crlb_samples": sess.timing_crlb(i)})
        cfo_true = self.truth.cfo_hz()
        cfo = [{"device": i, "residual_hz": float(d.tracker.cfo_hz - cfo_true[i])}
               for i, d in enumerate(sess.devices) if d.tracker.synced]
        trial = {"seed": None, "rounds": self._nmse, "timing": self._timing, "prach": prach, "cfo": cfo,
                 "excluded_devices": base["excluded_devices"], "overhead": base["overhead"], "events": sess.events,
                 "subcarrier_spacing_hz": sess.ofdm.subcarrier_spacing}
        summary = summarize([trial], sess.fs)
        return {**summary, **base}


def data_symbols_for(channel_uses: int, n_data: int, max_symbols: int = MAX_DATA_SYMBOLS) -> int:
    """OFDM data symbols per burst so that ⌈s/2⌉ complex values fit in as few, equally full bursts as possible."""
    n_c = math.ceil(channel_uses / 2)
    per_symbol = math.ceil(n_c / n_data)
    bursts = math.ceil(per_symbol / max_symbols)
    return math.ceil(per_symbol / bursts)


def radio_sum_channel(ps, devices: list, ofdm, sync: SyncConfig | None = None, *, power: float = 200.0,
                      channel_uses: int = 3925, calibrate: bool = True, **session) -> RadioSumChannel:
    """A RadioSumChannel over any radios: ``ps`` (the parameter server's Radio) and ``devices`` (list of Radio, each
    with its own clock), ``ofdm`` a :class:`phy.ofdm.OfdmConfig`. Builds the SyncSession (``session``: further
    SyncSession keyword arguments; data_symbols defaults to :func:`data_symbols_for`), runs random access once and
    calibrates. No truth is attached (``sync_report`` then has the overhead and counters only)."""
    session.setdefault("data_symbols", data_symbols_for(channel_uses, ofdm.n_data))
    sess = SyncSession(ps, list(devices), ofdm, sync or SyncConfig(), **session)
    sess.access()
    channel = RadioSumChannel(sess, power, channel_uses)
    if calibrate:
        channel.calibrate()
    return channel


def sum_channel(n_devices: int, snr_db: float = 10.0, seed: int = 0, profile: str = "TDL-A", *,
                power: float = 200.0, channel_uses: int = 3925, sync: SyncConfig | None = None,
                calibrate: bool = True, timing_advance: bool = True, air: str = "loopback",
                bind: str = DEFAULT_BIND, wire: str = "fc32", **scenario) -> RadioSumChannel:
    """A RadioSumChannel on a fresh cell (:func:`lab.factory.build_cell`): K = ``n_devices`` devices placed as in
    :class:`lab.factory.Scenario` (``scenario``: further Scenario fields, e.g. max_delay_cp, cfo_ppm, sco_ppm,
    preset), synchronized once (beacons, random access, timing advance), then calibrated with two probe rounds.

    ``snr_db``: per-subcarrier SNR at the PS for a unit-gain link; ``profile``: multipath ("none", "TDL-A".."TDL-E");
    ``power``/``channel_uses``: the FEEL scheme's P_t and s (they fix the scale c); ``timing_advance`` False: the
    devices never apply TA (what TA is worth); ``air``: "loopback" (in-process) or "zmq" (every sample over a
    ZeroMQ broker in this process, ``bind``/``wire``; the same cell and procedure, the same samples). The air, the PS
    radio, the truth and the cell are reachable as ``channel.air``, ``channel.ps``, ``channel.truth`` and
    ``channel.cell`` (call ``channel.cell.close()`` when done)."""
    preset = scenario.get("preset", Scenario.preset)
    sample_rate = scenario.get("sample_rate", Scenario.sample_rate)
    n_data = OfdmConfig.preset(preset, sample_rate=sample_rate).n_data
    scenario.setdefault("data_symbols", data_symbols_for(channel_uses, n_data))
    scn = Scenario(devices=n_devices, snr_db=snr_db, profile=profile, **scenario)
    cell = build_cell(scn, sync or SyncConfig(), seed, air=air, bind=bind, wire=wire)
    try:
        session = new_session(cell, scn, seed, timing_advance=timing_advance)
        session.access()
        channel = RadioSumChannel(session, power, channel_uses, truth=cell_truth(cell, scn))
        channel.air, channel.ps, channel.radios, channel.scenario, channel.cell = (cell.air, cell.ps, cell.radios,
                                                                                   scn, cell)
        if calibrate:
            channel.calibrate()
    except BaseException:
        cell.close()
        raise
    return channel


def loopback_sum_channel(n_devices: int, snr_db: float = 10.0, seed: int = 0, profile: str = "TDL-A",
                         **kw) -> RadioSumChannel:
    """:func:`sum_channel` on the in-process air."""
    return sum_channel(n_devices, snr_db, seed, profile, air="loopback", **kw)


def zmq_sum_channel(n_devices: int, snr_db: float = 10.0, seed: int = 0, profile: str = "TDL-A",
                    **kw) -> RadioSumChannel:
    """:func:`sum_channel` with every sample carried over a ZeroMQ broker in this process."""
    return sum_channel(n_devices, snr_db, seed, profile, air="zmq", **kw)


def config_sum_channel(config, n_devices: int, s: int, power: float, seed: int) -> RadioSumChannel:
    """A RadioSumChannel on the radios of a bench config (:func:`lab.factory.config_cell`: a loopback YAML's air, or
    endpoints on the running ZeroMQ broker of a zmq YAML); ``channel.cell`` to close."""
    cell = config_cell(config, n_devices, seed)
    try:
        channel = radio_sum_channel(cell.ps, cell.radios, cell.ofdm, cell.cfg, power=power, channel_uses=s,
                                    preambles=cell.preambles, rng=cell.rng)
    except BaseException:
        cell.close()
        raise
    channel.cell = cell
    return channel


class ChannelFactory:
    """``factory(n_devices, s, power) -> RadioSumChannel`` for ``otalab feel --radio``: "loopback" (the in-process
    cell at ``snr_db``), "zmq" (the same cell over a ZeroMQ broker in this process) or a loaded bench config
    (:func:`config_sum_channel`). :meth:`close` closes every cell it built."""

    def __init__(self, radio, snr_db: float = 20.0, seed: int = 0):
        self.radio, self.snr_db, self.seed = radio, float(snr_db), int(seed)
        self.cells: list = []

    def __call__(self, n_devices: int, s: int, power: float) -> RadioSumChannel:
        if self.radio in ("loopback", "zmq"):
            channel = sum_channel(n_devices, self.snr_db, self.seed, air=self.radio, power=power, channel_uses=s)
        else:
            channel = config_sum_channel(self.radio, n_devices, s, power, self.seed)
        self.cells.append(channel.cell)
        return channel

    def close(self) -> None:
        while self.cells:
            self.cells.pop().close()
