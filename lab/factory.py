"""Open the radio a bench config describes: ``open_radio(config, role)`` for every driver, imported lazily.

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
from pathlib import Path

from lab.config import DRIVER_ARGS, LabConfig
from radio.base import Radio, RadioError


def make_air(config: LabConfig):
    """A simulated air for ``config`` (its ``air:`` section, or a noiseless ideal air when the section is absent)."""
    from radio.sim.air import Air, AirConfig  # noqa: PLC0415

    air_cfg = config.air if config.air is not None else AirConfig()
    return Air.from_config(air_cfg, config.radio.sample_rate, config.radio.center_freq)


def endpoint_name(base: str, role: str) -> str:
    """Endpoint name of a simulated radio: the configured name for role "rx", ``base-role`` for any other role."""
    return base if role in ("", "rx") else f"{base}-{role}"


def open_radio(config: LabConfig, role: str = "rx", *, air=None, endpoint: str | None = None,
               record: str | Path | None = None, uhd_module=None) -> Radio:
    """Open the radio of ``config`` (a :class:`lab.config.LabConfig`).

    ``role`` names what this radio does in an experiment ("rx", "tx", "ps", "dev0", ...): simulated radios (loopback,
    zmq, emulated Pluto) use it for their endpoint name on the air (see :func:`endpoint_name`; ``endpoint``
    overrides), so several radios of one config can share an air. ``air``: the :class:`radio.sim.air.Air` shared by
    loopback radios and emulated Plutos (None: a new one from ``config.air``). ``record``: a path prefix; the radio is
    wrapped in a :class:`radio.recording.RecordingRadio` that writes SigMF recordings there. ``uhd_module``: passed
    to the USRP driver (tests). Raises RadioError naming the driver and what is missing.
    """
    section, args = config.radio, config.radio_args
    driver = section.driver
    if args is None:
        raise RadioError(f"{config.source}: driver {driver!r} is not available in this install: its module "
                         f"{DRIVER_ARGS[driver].partition(':')[0]} is missing")
    if driver == "loopback":
        from radio.drivers.loopback import LoopbackRadio  # noqa: PLC0415

        radio = LoopbackRadio(air if air is not None else make_air(config),
                              endpoint or endpoint_name(args.endpoint, role),
                              max_buffer_samples=args.max_buffer_samples, realtime=args.realtime)
    elif driver == "zmq":
        from radio.drivers.zmq import ZmqRadio  # noqa: PLC0415

        name = endpoint or endpoint_name(args.name, role)
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
