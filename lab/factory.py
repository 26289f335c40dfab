"""The one place radios and cells are built: ``open_radio(config, role)`` for every driver, ``open_link_pair``
for a transmitter and a receiver, and the synchronized cells of the experiments (a PS and K devices) on the
in-process air, on a ZeroMQ broker in this process, or on the radios of a bench config.

    cfg = load_config("hw_configs/usrp-b210.yaml", ["radio.rx_gain=30"])
    with open_radio(cfg) as radio:
        samples, t0 = radio.rx(4096)

Drivers: "loopback" (an endpoint on an in-process simulated :class:`radio.sim.air.Air`), "zmq" (an endpoint on a
ZeroMQ channel broker, ``otalab air``), "pluto" (a PlutoSDR through pyadi-iio, or its emulator on the simulated air
when ``radio.args.emulate`` is true) and "usrp" (UHD). Only the chosen driver's module is imported, so a missing
optional dependency (UHD, libiio) only matters to those who use that radio.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lab.config import DRIVER_ARGS, LabConfig
from phy.ofdm import OfdmConfig
from radio.base import Radio, RadioError
from radio.drivers.loopback import LoopbackRadio
from radio.sim.air import Air
from radio.sim.channel import LinkParams
from radio.wrappers import OffsetClockRadio
from sync.config import SPEED_OF_LIGHT, SyncConfig
from sync.procedure import SyncSession


def make_air(config: LabConfig):
    """A simulated air for ``config`` (its ``air:`` section, or a noiseless ideal air when the section is absent)."""
    from radio.sim.air import AirConfig  # noqa: PLC0415

    air_cfg = config.air if config.air is not None else AirConfig()
    return Air.from_config(air_cfg, config.radio.sample_rate, config.radio.center_freq)


def endpoint_name(base: str, role: str) -> str:
    """Endpoint name of a simulated radio: the configured name for role "rx", ``base-role`` for any other role."""
    return base if role in ("", "rx") else f"{base}-{role}"


def open_radio(config: LabConfig, role: str = "rx", *, air=None, endpoint: str | None = None,
               record: str | Path | None = None, uhd_module=None, transmit_only: bool = False,
               hold_clock: bool | None = None) -> Radio:
    """Open the radio of ``config`` (a :class:`lab.config.LabConfig`).

    ``role`` names what this radio does in an experiment ("rx", "tx", "ps", "dev0", ...): simulated radios (loopback,
    zmq, emulated Pluto) use it for their endpoint name on the air (see :func:`endpoint_name`; ``endpoint``
    overrides), so several radios of one config can share an air. ``air``: the :class:`radio.sim.air.Air` shared by
    loopback radios and emulated Plutos (None: a new one from ``config.air``). ``record``: a path prefix; the radio is
    wrapped in a :class:`radio.recording.RecordingRadio` that writes SigMF recordings there. ``uhd_module``: passed
    to the USRP driver (tests). ``transmit_only``: this radio only sends (a ZeroMQ endpoint then neither receives nor
    holds the free-running clock, so a reader in the same thread never waits for it). Raises RadioError naming the
    driver and what is missing.
    """
    section, args = config.radio, config.radio_args
    driver = section.driver
    if args is None:
        raise RadioError(f"{config.source}: driver {driver!r} is not available in this install: its module "
                         f"{DRIVER_ARGS[driver].partition(':')[0]} is missing")
    if driver == "loopback":
        radio = LoopbackRadio(air if air is not None else make_air(config),
                              endpoint or endpoint_name(args.endpoint, role),
                              max_buffer_samples=args.max_buffer_samples, realtime=args.realtime)
    elif driver == "zmq":
        from radio.drivers.zmq import ZmqRadio  # noqa: PLC0415

        name = endpoint or endpoint_name(args.name, role)
        if transmit_only:
            args = dataclasses.replace(args, receive=False, hold_clock=False)
        if hold_clock is not None:
            args = dataclasses.replace(args, hold_clock=hold_clock)
        radio = ZmqRadio.from_args(dataclasses.replace(args, name=name), section.sample_rate, section.center_freq)
    elif driver == "pluto":
        from radio.drivers.pluto import PlutoRadio  # noqa: PLC0415

        if args.emulate:
            radio = PlutoRadio.from_config(section, args, air=air if air is not None else make_air(config),
                                           endpoint=endpoint or endpoint_name(args.emulator.endpoint, role))
        else:
            radio = PlutoRadio.from_config(section, args)
    elif driver == "usrp":
        from radio.drivers.usrp import UsrpRadio  # noqa: PLC0415

        radio = UsrpRadio(section.sample_rate, section.center_freq, section.tx_gain, section.rx_gain, args,
                          uhd_module=uhd_module)
    else:  # RadioSection's Literal makes this unreachable for validated configs
        raise RadioError(f"{config.source}: radio.driver = {driver!r}: expected one of {', '.join(DRIVER_ARGS)}")
    if record is not None:
        from radio.recording import RecordingRadio  # noqa: PLC0415

        radio = RecordingRadio(radio, record, description=f"otalab {role} radio, config {config.source}")
    return radio


def open_link_pair(config: LabConfig) -> tuple[Radio, Radio, list]:
    """(transmitter, receiver, radios to close) of a bench config for a one-way link: two endpoints ``<name>-tx``
    (transmit-only) and ``<name>`` on the same simulated air (loopback: an in-process air from the config's ``air:``
    section; zmq: the running broker at ``radio.args.address``; emulated Pluto: the emulator's air). A hardware
    radio cannot be both ends here: RadioError saying to use two configs."""
    driver = config.radio.driver
    simulated = driver in ("loopback", "zmq") or (driver == "pluto" and getattr(config.radio_args, "emulate", False))
    if not simulated:
        raise RadioError(f"{config.source}: radio.driver = {driver!r} is one device; a link needs a transmitter and "
                         f"a receiver: use a simulated air (loopback, zmq, emulated pluto) or two radios")
    air = make_air(config) if driver != "zmq" else None
    tx = open_radio(config, "tx", air=air, transmit_only=True)
    try:
        rx = open_radio(config, "rx", air=air)
    except BaseException:
        tx.close()
        raise
    return tx, rx, [tx, rx]

# --------------------------------------------------------------------------------------------------- cells
#: where an in-process ZeroMQ broker binds by default (port 0: the OS picks a free port; read it back from the cell)
DEFAULT_BIND = "tcp://127.0.0.1:0"


@dataclass
class Scenario:
    """One cell: K devices, geometry, oscillators, channel and SNR (see module docstring)."""

    devices: int = 8
    snr_db: float = 10.0              # uplink: per-subcarrier SNR at the PS for a unit-gain link
    ps_power_db: float = 10.0         # the PS (a base station) transmits this much more power than a device
    max_delay_cp: float = 20.0        # largest one-way delay in cyclic-prefix lengths (sets the cell radius)
    cfo_ppm: float = 10.0             # device carrier offsets uniform in ±cfo_ppm (PS at 0)
    sco_ppm: float = 10.0             # device sampling-clock offsets uniform in ±sco_ppm
    center_freq: float = 2.4e9
    sample_rate: float = 20e6
    profile: str = "TDL-A"            # per-link multipath ("none" for AWGN)
    delay_spread_s: float = 30e-9
    clock_offset_max: int = 100_000   # device clocks start anywhere in [0, this) samples
    rounds: int = 2
    data_symbols: int = 8
    preset: str = "wifi64"
    never_answer: tuple[int, ...] = ()        # devices that never transmit
    dropout: dict[int, int] = field(default_factory=dict)  # device -> round (1-based) from which it is silent
    same_preamble: tuple[int, ...] = ()       # devices forced onto preamble 0 (collisions)
    lost_beacons: tuple[int, ...] = ()        # access beacons (0-based) the PS never sends

    def __post_init__(self):
        if isinstance(self.devices, bool) or not isinstance(self.devices, (int, np.integer)) or self.devices < 1:
            raise ValueError(f"devices = {self.devices!r}: expected an integer K >= 1")
        for name in ("never_answer", "same_preamble"):
            bad = [d for d in getattr(self, name) if not 0 <= int(d) < self.devices]
            if bad:
                raise ValueError(f"{name} = {getattr(self, name)!r}: device {bad[0]} does not exist "
                                 f"(expected 0..{self.devices - 1})")
        for dev, rnd in self.dropout.items():
            if not 0 <= int(dev) < self.devices:
                raise ValueError(f"dropout = {self.dropout!r}: device {dev} does not exist "
                                 f"(expected 0..{self.devices - 1})")
            if int(rnd) < 1:
                raise ValueError(f"dropout = {self.dropout!r}: round {rnd} for device {dev}: expected a 1-based "
                                 f"round >= 1")
        if any(int(b) < 0 for b in self.lost_beacons):
            raise ValueError(f"lost_beacons = {self.lost_beacons!r}: expected 0-based beacon indices >= 0")
        for name in ("snr_db", "ps_power_db", "max_delay_cp", "cfo_ppm", "sco_ppm", "delay_spread_s"):
            v = getattr(self, name)
            if not math.isfinite(float(v)) or (name not in ("snr_db", "ps_power_db") and float(v) < 0):
                raise ValueError(f"{name} = {v!r}: expected a finite number" + (" >= 0" if name not in (
                    "snr_db", "ps_power_db") else ""))

    def ofdm(self) -> OfdmConfig:
        return OfdmConfig.preset(self.preset, sample_rate=self.sample_rate)

    def cell_radius_m(self) -> float:
        cp = self.ofdm().cp_len
        return self.max_delay_cp * cp / self.sample_rate * SPEED_OF_LIGHT


def path_span(link, within_db: float = 20.0) -> tuple[int, int]:
    """First and last tap lag (samples) of a link's realized multipath holding power within ``within_db`` of its
    strongest tap — the maximum excess delay at that level, the usual measure of how far a channel smears a symbol
    (a tap 20 dB down smears less than the 10 dB-SNR noise floor). (0, 0) for a single-path link."""
    if link is None or link.tap_lags.size == 1:
        return 0, 0
    p = np.abs(link.tap_coeffs) ** 2
    sig = np.flatnonzero(p >= p.max() * 10 ** (-within_db / 10))
    return int(link.tap_lags[sig[0]]), int(link.tap_lags[sig[-1]])


def uplink_gain(air: Air, dev: str, ofdm: OfdmConfig) -> np.ndarray:
    """|H| of the true uplink channel on the used subcarriers (float[n_used])."""
    link = air.link(dev, "ps")
    if link is None:
        return np.ones(ofdm.n_used)
    bulk, h = link.impulse_response
    m = np.asarray(ofdm.used_subcarriers, dtype=np.float64)
    resp = np.exp(-2j * np.pi * np.outer(m, np.arange(h.size)) / ofdm.fft_size) @ h
    return np.abs(resp)


@dataclass
class Cell:
    """A built scenario: the air, the PS's radio, the devices' radios (each with its own clock), their preambles, the
    sync settings sized for the cell, and the truth (delays, carrier and clock offsets) the evaluation needs."""

    air: Air
    ps: Radio | None
    radios: list | None
    preambles: list[int]
    cfg: SyncConfig
    delays: np.ndarray
    ppm: np.ndarray
    sco: np.ndarray
    offsets: np.ndarray
    rng: np.random.Generator
    ofdm: OfdmConfig | None = None
    broker: object = None                                  # the ChannelBroker serving a ZeroMQ cell
    address: str | None = None                             # where that broker listens
    closers: list = field(default_factory=list)            # radios to close with the cell

    def close(self) -> None:
        """Leave the air (close every radio this cell opened) and stop its broker; idempotent."""
        while self.closers:
            self.closers.pop().close()
        if self.broker is not None:
            self.broker.stop()                             # idempotent; its events stay readable

    def __enter__(self) -> Cell:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def place_devices(scn: Scenario, cfg: SyncConfig, seed: int) -> Cell:
    """Place the devices of ``scn`` on a new in-process air (module docstring); deterministic for ``seed``.

    Returns a :class:`Cell` whose ``ps`` and ``radios`` are None: the air holds endpoints ``"ps"`` and
    ``"dev0"`` … ``"dev{K-1}"`` with their noise and links, and the radios are the caller's choice
    (:func:`build_cell`: in-process loopback, or ZeroMQ endpoints on a broker serving this air).
    The random draws are the same as :func:`build_cell`'s, in the same order."""
    rng = np.random.default_rng(seed)
    of = scn.ofdm()
    k = scn.devices
    fs, fc = scn.sample_rate, scn.center_freq
    n0 = 10 ** (-scn.snr_db / 10)
    cfg = dataclasses.replace(cfg, cell_radius_m=scn.cell_radius_m())
    air = Air(fs, fc, seed=int(rng.integers(1 << 31)))
    air.add_endpoint("ps", noise_power=n0)
    names = [f"dev{i}" for i in range(k)]
    for nm in names:  # downlink SNR = uplink SNR + ps_power_db (modelled as lower noise at the devices)
        air.add_endpoint(nm, noise_power=n0 * 10 ** (-scn.ps_power_db / 10))
    delays = rng.uniform(0, scn.max_delay_cp * of.cp_len, k)
    ppm = rng.uniform(-scn.cfo_ppm, scn.cfo_ppm, k)
    sco = rng.uniform(-scn.sco_ppm, scn.sco_ppm, k)
    offsets = rng.integers(0, max(scn.clock_offset_max, 1), k)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                air.set_link(a, b, None)
        common = dict(delay_samples=float(delays[i]), profile=scn.profile, delay_spread_s=scn.delay_spread_s)
        # downlink sees PS carrier − device carrier; the device's fast clock stretches what it receives and
        # compresses what it sends (sco ± on the two directions)
        air.set_link("ps", a, LinkParams(cfo_ppm=-ppm[i], sco_ppm=sco[i], **common))
        air.set_link(a, "ps", LinkParams(cfo_ppm=ppm[i], sco_ppm=-sco[i], **common))
    preambles = [0 if i in scn.same_preamble else i + 1 for i in range(k)]
    return Cell(air, None, None, preambles, cfg, delays, ppm, sco, offsets, rng, of)


def build_cell(scn: Scenario, cfg: SyncConfig, seed: int, *, air: str = "loopback", bind: str = DEFAULT_BIND,
               wire: str = "fc32", timeout_s: float = 10.0) -> Cell:
    """The cell of Scenario ``scn`` (:func:`place_devices`, deterministic for ``seed``) with its radios attached,
    each device behind its own clock (:class:`radio.wrappers.OffsetClockRadio`):

    - ``air="loopback"``: in-process loopback radios on the cell's air;
    - ``air="zmq"``: the cell's air served by a :class:`radio.servers.zmq_broker.ChannelBroker` in a background thread
      (free pacing, bound to ``bind``, ``127.0.0.1`` port 0 by default) and one :class:`radio.drivers.zmq.ZmqRadio`
      endpoint per node in this process — the PS's holds the clock, the devices' do not (``wire``: ``"fc32"`` or
      ``"sc16"``; ``timeout_s``: how long an endpoint waits for a silent broker). Every sample crosses the sockets.
      One process works because the session schedules every transmission of a phase first, then lets the PS read
      (only the PS holds the clock), then lets every device read what it has received up to ``time_now``; since
      the air's noise is random-access and the broker runs the same ``Air.advance`` as the loopback hub, the run
      reproduces the in-process one sample for sample.

    Close the cell (:meth:`Cell.close`, or use it as a context manager) to leave the air and stop its broker."""
    if air not in ("loopback", "zmq"):
        raise ValueError(f"air = {air!r}: expected 'loopback' or 'zmq'")
    cell = place_devices(scn, cfg, seed)
    if air == "loopback":
        cell.ps = LoopbackRadio(cell.air, "ps")
        devices = [LoopbackRadio(cell.air, f"dev{i}") for i in range(scn.devices)]
    else:
        from radio.drivers.zmq import ZmqRadio  # noqa: PLC0415
        from radio.servers.zmq_broker import BrokerConfig, ChannelBroker  # noqa: PLC0415

        cell.broker = ChannelBroker(cell.air, BrokerConfig(pacing="free"), bind=bind).start()
        cell.address = cell.broker.endpoint
        devices = []
        try:
            for name, hold in [("ps", True)] + [(f"dev{i}", False) for i in range(scn.devices)]:
                radio = ZmqRadio(cell.address, name, sample_rate=scn.sample_rate, center_freq=scn.center_freq,
                                 hold_clock=hold, wire=wire, timeout_s=timeout_s)
                cell.closers.append(radio)
                devices.append(radio)
        except BaseException:
            cell.close()
            raise
        cell.ps = devices.pop(0)
    cell.radios = [OffsetClockRadio(r, int(o)) for r, o in zip(devices, cell.offsets)]
    return cell


def add_device_endpoint(cell: Cell, scn: Scenario, name: str, *, seed: int = 0) -> tuple[Radio, dict]:
    """One more transmit-only device on a cell's in-process air (e.g. a camera sending to the PS), placed like the
    scenario's devices — random delay within the cell, CFO and SCO within ±ppm, the scenario's multipath — and
    linked to the PS only. Returns (its LoopbackRadio, its link parameters as a dict)."""
    air = cell.air
    radio = LoopbackRadio(air, name, noise_power=0.0)
    air.set_receiving(name, False)
    for other in air.endpoints:
        if other not in (name, "ps"):
            air.set_link(name, other, None)
    rng = np.random.default_rng([seed, 77])
    params = LinkParams(delay_samples=float(rng.uniform(0, scn.max_delay_cp * scn.ofdm().cp_len)),
                        cfo_ppm=float(rng.uniform(-scn.cfo_ppm, scn.cfo_ppm)),
                        sco_ppm=float(rng.uniform(-scn.sco_ppm, scn.sco_ppm)),
                        profile=scn.profile, delay_spread_s=scn.delay_spread_s)
    air.set_link(name, "ps", params)
    cell.closers.append(radio)
    return radio, dataclasses.asdict(params)


def cell_truth(cell: Cell, scn: Scenario) -> CellTruth:
    """What the simulation knows about ``cell`` and the procedure must estimate (:class:`CellTruth`)."""
    of = scn.ofdm()
    names = [f"dev{i}" for i in range(scn.devices)]
    return CellTruth(delays=cell.delays, offsets=cell.offsets, cfo_ppm=cell.ppm, sco_ppm=cell.sco,
                     span=np.array([path_span(cell.air.link(nm, "ps")) for nm in names]),
                     gains=np.stack([uplink_gain(cell.air, nm, of) for nm in names]),
                     noise_power=10 ** (-scn.snr_db / 10), center_freq=scn.center_freq)


def new_session(cell: Cell, scn: Scenario, seed: int, *, timing_advance: bool = True,
                n_pilot_symbols: int | None = None) -> SyncSession:
    """The synchronization session of ``cell`` (before access) with the scenario's faults applied: devices that
    never answer, drop out from a round on, and beacons the PS never sends."""
    session = SyncSession(cell.ps, cell.radios, scn.ofdm(), cell.cfg, preambles=cell.preambles,
                          timing_advance=timing_advance, data_symbols=scn.data_symbols,
                          n_pilot_symbols=n_pilot_symbols, rng=np.random.default_rng(seed + 1))
    for i, dev in enumerate(session.devices):
        dev.answers = i not in scn.never_answer
        dev.alive_until_round = scn.dropout.get(i)
    session.lost_beacons = set(scn.lost_beacons)
    return session


def config_cell(config: LabConfig, n_devices: int, seed: int) -> Cell:
    """A cell of ``n_devices`` devices and a PS on the radios of a bench config: a loopback config puts them on an
    in-process air built from its ``air:`` section (every link as configured, no placement); a zmq config connects
    them as endpoints ``ps`` (holds the clock) and ``dev0``.. (``hold_clock=False``) to the running broker at
    ``radio.args.address`` (``otalab air --config ...``), each device behind a clock offset drawn from ``seed``.
    The cell's ``cfg`` is the config's ``sync`` section; truths are unknown (NaN). RadioError names what failed."""
    driver = config.radio.driver
    k = int(n_devices)
    cfg = config.sync or SyncConfig()
    of = config.ofdm.to_config(config.radio.sample_rate)
    nan = np.full(k, np.nan)
    offsets = np.random.default_rng([seed, 43]).integers(0, 100_000, k)
    cell = Cell(air=None, ps=None, radios=None, preambles=list(range(1, k + 1)), cfg=cfg, delays=nan, ppm=nan,
                sco=nan, offsets=offsets, rng=np.random.default_rng([seed, 42]), ofdm=of)
    if driver == "loopback":
        cell.air = make_air(config)
        for name in ["ps"] + [f"dev{i}" for i in range(k)]:
            cell.air.add_endpoint(name)
        cell.ps = LoopbackRadio(cell.air, "ps")
        cell.radios = [LoopbackRadio(cell.air, f"dev{i}") for i in range(k)]
        cell.offsets = np.zeros(k, np.int64)
        return cell
    if driver != "zmq":
        raise RadioError(f"{config.source}: radio.driver = {driver!r}: a cell on one host's simulated air needs "
                         f"'loopback' or 'zmq'; radios of their own need one node per radio")
    try:
        cell.ps = open_radio(config, endpoint="ps")
        cell.closers.append(cell.ps)
        for i in range(k):
            dev = open_radio(config, endpoint=f"dev{i}", hold_clock=False)
            cell.closers.append(dev)
        cell.radios = [OffsetClockRadio(r, int(o)) for r, o in zip(cell.closers[1:], offsets)]
    except RadioError as exc:
        cell.close()
        raise RadioError(f"{exc} (is `otalab air --config {config.source}` running?)") from None
    return cell


@dataclass
class CellTruth:
    """What the simulation knows about a cell and the procedure must estimate (all float64/int64 arrays of length K).

    ``delays``: one-way delay per device [samples]; ``offsets``: device clock minus the global clock [samples];
    ``cfo_ppm``/``sco_ppm``: device carrier and sampling-clock offsets; ``span``: first and last uplink tap within 20 dB of the strongest (:func:`path_span`) of each uplink
    [samples]; ``gains``: float64[K, n_used] |H| of each true uplink on the used subcarriers; ``noise_power``: the PS's
    noise variance per complex sample; ``center_freq``: Hz.
    """

    delays: np.ndarray
    offsets: np.ndarray
    cfo_ppm: np.ndarray
    sco_ppm: np.ndarray
    span: np.ndarray
    gains: np.ndarray
    noise_power: float
    center_freq: float

    def arrival(self, local: float, i: int) -> float:
        """PS (= global) time at which a burst that device ``i`` starts at its clock's ``local`` arrives (first
        path): (local − offset + delay) / (1 + sco·1e-6), the uplink compressing the device's samples by sco ppm."""
        return (local - self.offsets[i] + self.delays[i]) / (1 + self.sco_ppm[i] * 1e-6)

    def cfo_hz(self) -> np.ndarray:
        """True downlink carrier offset each device should measure on beacons: −cfo_ppm·1e-6·f_c (float64[K])."""
        return -self.cfo_ppm * 1e-6 * self.center_freq
