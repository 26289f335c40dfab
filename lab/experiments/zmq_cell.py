"""A synchronized cell over ZeroMQ: the :mod:`lab.experiments.sync_trials` cell served by a :class:`radio.servers.zmq_broker.ChannelBroker`.

:class:`ZmqCell` places K devices exactly as :func:`lab.experiments.sync_trials.build_cell` does (same random draws for the
same seed: one-way delays, clock offsets, carrier and sampling-clock offsets, multipath, noise), but instead of
in-process loopback radios it hands the cell's :class:`radio.sim.air.Air` to a ChannelBroker (in a background thread, bound
to ``127.0.0.1`` port 0 by default) and opens one :class:`radio.drivers.zmq.ZmqRadio` endpoint per node in this process:
the PS's (it holds the free-running clock) and the devices' (``hold_clock=False``), each device behind a
:class:`radio.wrappers.OffsetClockRadio` with its own clock. Every sample then crosses the ZeroMQ sockets.

Why one process works: :class:`sync.procedure.SyncSession` is single-threaded and, in every phase, schedules all
transmissions first, then lets the PS read the phase (only the PS holds the clock, so its read is what moves the air),
then lets every device read what it has received *up to now* (``time_now``), never beyond. A device therefore never
waits for samples the clock has not reached, which is the case where two endpoints driven from one thread deadlock in
free pacing (see docs/zmq-air.md). Since the air's noise is random-access and the broker runs the same
``Air.advance`` as the loopback hub, a run over ZeroMQ reproduces the in-process run with the same seed sample for
sample (tests/lab/test_feel_zmq.py checks this).

:func:`zmq_sum_channel` is :func:`lab.experiments.feel_air.loopback_sum_channel` over such a cell: a FEEL
:class:`lab.experiments.feel_air.RadioSumChannel`, synchronized and calibrated, with ``channel.cell`` to close.
"""

from __future__ import annotations

from typing import Self

from lab.experiments.sync_trials import Scenario, place_devices
from radio.wrappers import OffsetClockRadio
from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
from radio.drivers.zmq import ZmqRadio
from sync.config import SyncConfig

#: where the in-process broker binds by default (port 0: the OS picks a free port; read it back from ``address``)
DEFAULT_BIND = "tcp://127.0.0.1:0"


class ZmqCell:
    """The cell of Scenario ``scn`` (seed ``seed``) on a ChannelBroker with in-process ZmqRadio endpoints.

    Args:
        scn: the :class:`lab.experiments.sync_trials.Scenario` (devices, SNR, delays, CFO/SCO, profile, ...).
        cfg: sync settings (the cell radius is filled in from the scenario).
        seed: the placement seed (same draws as :func:`lab.experiments.sync_trials.build_cell`).
        bind: the broker's address (default ``tcp://127.0.0.1:0``).
        wire: sample format on the sockets, ``"fc32"`` (lossless) or ``"sc16"``.
        timeout_s: how long an endpoint waits for a silent broker.

    Attributes: ``cell`` (:class:`lab.experiments.sync_trials.Cell` with ``ps``: ZmqRadio and ``radios``: list of
    OffsetClockRadio around ZmqRadio), ``broker``, ``address`` (the bound endpoint, e.g. ``tcp://127.0.0.1:40123``).
    A context manager; :meth:`close` closes the endpoints and stops the broker (idempotent).
    """

    def __init__(self, scn: Scenario, cfg: SyncConfig, seed: int, *, bind: str = DEFAULT_BIND, wire: str = "fc32",
                 timeout_s: float = 10.0):
        self.scenario = scn
        self.cell = place_devices(scn, cfg, seed)
        self.broker = ChannelBroker(self.cell.air, BrokerConfig(pacing="free"), bind=bind).start()
        self.address = self.broker.endpoint
        self._endpoints: list[ZmqRadio] = []
        try:
            ps = self._open("ps", hold_clock=True, wire=wire, timeout_s=timeout_s)
            devices = [self._open(f"dev{i}", hold_clock=False, wire=wire, timeout_s=timeout_s)
                       for i in range(scn.devices)]
        except BaseException:
            self.close()
            raise
        self.cell.ps = ps
        self.cell.radios = [OffsetClockRadio(r, int(o)) for r, o in zip(devices, self.cell.offsets)]

    def _open(self, name: str, **kw) -> ZmqRadio:
        radio = ZmqRadio(self.address, name, sample_rate=self.scenario.sample_rate,
                         center_freq=self.scenario.center_freq, **kw)
        self._endpoints.append(radio)
        return radio

    def close(self) -> None:
        """Leave the air (every endpoint says bye) and stop the broker."""
        while self._endpoints:
            self._endpoints.pop().close()
        self.broker.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ZmqCell(address={self.address!r}, devices={self.scenario.devices}, now={self.broker.now})"


def zmq_sum_channel(n_devices: int, snr_db: float = 10.0, seed: int = 0, profile: str = "TDL-A", *,
                    power: float = 200.0, channel_uses: int = 3925, sync: SyncConfig | None = None,
                    calibrate: bool = True, timing_advance: bool = True, bind: str = DEFAULT_BIND,
                    wire: str = "fc32", **scenario):
    """:func:`lab.experiments.feel_air.loopback_sum_channel` with every sample carried over ZeroMQ (module docstring): the same
    arguments, the same cell and procedure, plus ``bind``/``wire`` for the broker. Returns the synchronized (and, with
    ``calibrate``, calibrated) :class:`lab.experiments.feel_air.RadioSumChannel`; ``channel.cell`` is the :class:`ZmqCell`
    (call ``channel.cell.close()`` when done), ``channel.air``/``ps``/``radios``/``truth``/``scenario`` as for the
    loopback channel."""
    from lab.experiments.feel_air import RadioSumChannel, build_cell, data_symbols_for
    from phy.ofdm import OfdmConfig

    preset = scenario.get("preset", Scenario.preset)
    sample_rate = scenario.get("sample_rate", Scenario.sample_rate)
    n_data = OfdmConfig.preset(preset, sample_rate=sample_rate).n_data
    scenario.setdefault("data_symbols", data_symbols_for(channel_uses, n_data))
    scn = Scenario(devices=n_devices, snr_db=snr_db, profile=profile, **scenario)
    cfg = sync or SyncConfig()
    zc = ZmqCell(scn, cfg, seed, bind=bind, wire=wire)
    try:
        air, ps, radios, session, truth = build_cell(scn, cfg, seed, timing_advance=timing_advance, cell=zc.cell)
        session.access()
        channel = RadioSumChannel(session, power, channel_uses, truth=truth)
        channel.air, channel.ps, channel.radios, channel.scenario, channel.cell = air, ps, radios, scn, zc
        if calibrate:
            channel.calibrate()
    except BaseException:
        zc.close()
        raise
    return channel
