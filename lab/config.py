"""Bench configuration: ``hw_configs/*.yaml`` → validated dataclasses, with ``--set key=value`` overrides.

Precedence: code defaults < YAML file < ``--set``. Unknown keys, wrong types and values outside what is allowed are
errors that name the file, the dotted key, the value and what is allowed (:class:`ConfigError`).

A config file has these top-level sections (all optional)::

    radio:   driver, sample_rate, center_freq, tx_gain, rx_gain, args   (args: the driver's own dataclass)
    air:     the simulated channel (loopback air, ZeroMQ broker, Pluto emulator)
    ofdm:    preset name plus overrides of phy's OFDM numerology
    sync:    synchronization settings (package ``sync``)

Each section's schema is a dataclass owned by the package that uses it; this module only knows how to build
dataclasses from dicts (:func:`build`) and where each schema lives (:data:`SECTIONS`, :data:`DRIVER_ARGS`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names file, key, value and what is allowed."""


@dataclasses.dataclass
class RadioSection:
    """Which radio to open and its common RF settings; ``args`` are driver-specific (see DRIVER_ARGS)."""

    driver: Literal["loopback", "zmq", "pluto", "usrp"] = "loopback"
    sample_rate: float = 20e6
    center_freq: float = 2.4e9
    tx_gain: float = 0.0
    rx_gain: float = 0.0
    args: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.sample_rate > 0:
            raise ValueError(f"sample_rate must be > 0 Hz, got {self.sample_rate}")
        if not self.center_freq > 0:
            raise ValueError(f"center_freq must be > 0 Hz, got {self.center_freq}")


#: driver name -> "module:Class" of the dataclass that validates ``radio.args`` for that driver
DRIVER_ARGS: dict[str, str] = {
    "loopback": "radio.drivers.loopback:LoopbackArgs",
    "zmq": "radio.drivers.zmq:ZmqArgs",
    "pluto": "radio.drivers.pluto:PlutoArgs",
    "usrp": "radio.drivers.usrp:UsrpArgs",
}

#: section name -> "module:Class" of its schema dataclass
SECTIONS: dict[str, str] = {
    "radio": "lab.config:RadioSection",
    "air": "radio.sim.air:AirConfig",
    "ofdm": "phy.ofdm:OfdmSection",
    "sync": "sync.config:SyncConfig",
}


def _load_class(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class SchemaUnavailable(ImportError):
    """The module that holds a section's schema is not part of this install (yet)."""


def _load_schema(spec: str):
    """Like :func:`_load_class`, but a schema module (or class) that does not exist raises SchemaUnavailable.

    Only the schema's own module (or one of its parent packages) being absent counts: a schema module that exists but
    fails to import because of a bug or a missing third-party dependency raises that error unchanged."""
    module, _, name = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        parts = module.split(".")
        if exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise SchemaUnavailable(f"module {module!r} is not available") from exc
        raise
    try:
        return getattr(mod, name)
    except AttributeError:
        raise SchemaUnavailable(f"module {module!r} has no class {name!r}") from None


def _type_name(tp) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp, value, where: str):
    """Convert a YAML value to ``tp`` or raise ConfigError naming ``where``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{where} = {value!r}: expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where} = {value!r}: expected null")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where} = {value!r}: expected {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r}: expected true or false")
    if tp is int:
        if isinstance(value, str) and _si_key(where):
            value = parse_si(value, where)
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer()))):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        if not -INT_LIMIT <= value < INT_LIMIT:
            raise ConfigError(f"{where} = {value!r}: expected an integer of magnitude below 2**63")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            if _si_key(where):
                return parse_si(value, where)
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where} = {value!r}: expected a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        try:
            out = float(value)
        except OverflowError:
            raise ConfigError(f"{where} = {value!r}: expected a finite number (this one overflows a float)") from None
        if not math.isfinite(out):
            raise ConfigError(f"{where} = {value!r}: expected a finite number")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} = {value!r}: expected a mapping")
        if origin is dict and len(get_args(tp)) == 2:
            vt = get_args(tp)[1]
            return {k: _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: expected a list")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where} = {value!r}: expected a list of {len(args)} items")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    return value


def build(cls, data: dict | None, where: str = ""):
    """Build dataclass ``cls`` from a dict: unknown keys, wrong types and ``__post_init__`` ValueErrors become
    ConfigError naming ``where`` (e.g. ``"hw_configs/x.yaml: radio.args"``)."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where} = {data!r}: expected a mapping with keys {sorted(_field_names(cls))}")
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    for key in data:
        if not isinstance(key, str):
            path = f"{where}.{key!r}" if where else repr(key)
            raise ConfigError(f"{path}: key {key!r} is a {type(key).__name__}; expected a string key, one of "
                              f"{', '.join(sorted(names))}")
    unknown = sorted(set(data) - set(names))
    if unknown:
        key = unknown[0]
        path = f"{where}.{key}" if where else str(key)
        raise ConfigError(f"{path}: unknown key {key!r}{_did_you_mean(key, names)}; "
                          f"allowed keys: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _did_you_mean(key, allowed) -> str:
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_KEY = re.compile(r"[A-Za-z0-9_\-]+|[A-Za-z0-9_\-]+->[A-Za-z0-9_\-]+")

#: integers must fit a signed 64-bit integer (numpy and the radios use int64 sample counts)
INT_LIMIT = 1 << 63
#: a config file larger than this is refused before it is parsed (bytes)
MAX_CONFIG_BYTES = 1 << 20
#: longest ``--set`` value (characters)
MAX_SET_CHARS = 10_000
#: most YAML nodes (scalars, lists, mappings, counted through aliases) a config may hold
MAX_CONFIG_NODES = 100_000

# ------------------------------------------------------------------------------------------------ SI suffixes
_SI = {"p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9,
       "T": 1e12}
_SI_RE = re.compile(r"\s*([-+]?(?:\d+(?:_\d+)*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([pnuµmkKMGT]?)\s*"
                    r"(Hz|S/s|Sps|sps)?\s*")
#: config keys (last dotted component) whose string values may carry an SI suffix: frequencies and rates
SI_KEYS = frozenset({"sample_rate", "center_freq", "rf_bandwidth", "bandwidth", "master_clock_rate", "lo_offset",
                     "symbol_rate", "freq", "rate"})


def parse_si(text: str | float | int, what: str = "value") -> float:
    """A frequency or rate written with an optional SI suffix and unit -> float.

    ``"2.4G"`` -> 2.4e9, ``"20M"`` -> 2e7, ``"500k"`` -> 5e5, ``"1.5e6"``, ``"915 MHz"``, ``"10 MS/s"``; numbers pass
    through. Suffixes: p n u (or µ) m k (or K) M G T; units Hz, S/s, sps (optional). Case matters: ``m`` is milli,
    ``M`` mega. Raises :class:`ConfigError` naming ``what``, the value and the accepted forms for anything else
    (including non-finite results).
    """
    if isinstance(text, bool):
        raise ConfigError(f"{what} = {text!r}: expected a number with an optional SI suffix (e.g. 2.4G, 20M, 500k)")
    if isinstance(text, (int, float)):
        try:
            value = float(text)
        except OverflowError:
            value = math.inf
    else:
        m = _SI_RE.fullmatch(str(text)) if isinstance(text, str) and len(text) <= 64 else None
        if m is None:
            raise ConfigError(f"{what} = {text!r}: expected a number with an optional SI suffix (p n u m k M G T) "
                              f"and unit (Hz, S/s), e.g. 2.4G, 20M, 500k, 915MHz")
        value = float(m.group(1).replace("_", "")) * _SI[m.group(2)]
    if not math.isfinite(value):
        raise ConfigError(f"{what} = {text!r}: expected a finite number")
    return value


def _si_key(where: str) -> bool:
    leaf = where.rsplit(".", 1)[-1].rsplit(" ", 1)[-1]
    return leaf in SI_KEYS or leaf.endswith(("_hz", "_freq", "_rate"))


def _check_size(data, where: str) -> None:
    """ConfigError if ``data`` holds more than MAX_CONFIG_NODES nodes (YAML aliases can nest exponentially)."""
    budget = MAX_CONFIG_NODES
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > 64:
            raise ConfigError(f"{where}: more than {MAX_CONFIG_NODES} values or nesting deeper than 64 (YAML "
                              f"aliases?); expected a bench config of modest size")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


# ----------------------------------------------------------------------------- physical and resource bounds
#: dotted key -> (lowest, highest, unit and reason). Checked after the schemas have built their sections, for
#: fields that exist (None values are skipped). Ranges hold every radio the lab drives, with room; a value outside
#: is a typo or an attack, never a bench setting. ``air.*`` impairment bounds also apply to every ``air.links`` entry.
MAX_DELAY_SAMPLES = 1 << 26
BOUNDS: dict[str, tuple[float, float, str]] = {
    "radio.sample_rate": (1e3, 1e10, "S/s"),
    "radio.center_freq": (1e3, 1e11, "Hz"),
    "radio.tx_gain": (-200.0, 200.0, "dB"),
    "radio.rx_gain": (-200.0, 200.0, "dB"),
    "air.snr_db": (-100.0, 300.0, "dB"),
    "air.noise_power": (0.0, 1e30, "(linear, per complex sample)"),
    "air.delay_samples": (0.0, float(MAX_DELAY_SAMPLES),
                          f"samples (the delay line holds them as complex64: {MAX_DELAY_SAMPLES * 8 >> 20} MiB at "
                          f"most)"),
    "air.gain": (-1e6, 1e6, "(linear amplitude)"),
    "air.path_loss_db": (-200.0, 400.0, "dB"),
    "air.cfo_ppm": (-1e3, 1e3, "ppm (crystal oscillators: tens of ppm)"),
    "air.sco_ppm": (-1e3, 1e3, "ppm"),
    "air.phase_noise_linewidth_hz": (0.0, 1e9, "Hz"),
    "air.doppler_hz": (0.0, 1e6, "Hz"),
    "air.delay_spread_s": (0.0, 1e-4, "s (measured RMS delay spreads are below ~5 us)"),
    "air.seed": (0, INT_LIMIT - 1, ""),
    "radio.args.max_buffer_samples": (1, 1 << 28, "samples (2 GiB of complex64)"),
    "radio.args.rx_buffer_size": (1, 1 << 24, "samples"),
    "radio.args.tx_buffer_size": (1, 1 << 24, "samples"),
    "radio.args.rf_bandwidth": (1e3, 1e10, "Hz"),
    "radio.args.bandwidth": (1e3, 1e10, "Hz"),
    "radio.args.master_clock_rate": (1e3, 1e10, "Hz"),
    "radio.args.lo_offset": (-1e10, 1e10, "Hz"),
    "radio.args.tx_attenuation_db": (0.0, 100.0, "dB"),
    "radio.args.timeout_s": (1e-3, 86_400.0, "s"),
    "radio.args.heartbeat_s": (1e-3, 3_600.0, "s"),
    "radio.args.start_delay": (0.0, 3_600.0, "s"),
    "radio.args.timeout": (0.0, 3_600.0, "s"),
    "radio.args.channel": (0, 64, ""),
    "sync.beacon_period": (1, 1 << 31, "samples"),
    "sync.beacons_before_access": (1, 10_000, "beacons"),
    "sync.cell_radius_m": (0.0, 3e5, "m (LTE's largest cell: 100 km)"),
    "sync.prach_oversampling": (1, 256, "(the PRACH IFFT is this times the data FFT)"),
    "sync.ta_update_period": (0, 1 << 31, "rounds"),
    "sync.time_alignment_timer": (0, 1 << 62, "samples"),
    "sync.max_access_attempts": (1, 1_000, "attempts"),
    "sync.backoff_window": (1, 1 << 20, "PRACH slots"),
    "sync.pilot_period": (1, 1 << 31, "rounds"),
    "sync.pilot_symbols_per_device": (1, 4_096, "symbols"),
    "sync.power": (1e-12, 1e6, "(per subcarrier)"),
    "sync.gain_threshold": (1e-12, 1e6, ""),
    "sync.window_backoff": (0, 1 << 20, "samples"),
    "sync.phase_noise_linewidth_hz": (0.0, 1e6, "Hz"),
    "sync.cfo_random_walk": (0.0, 1e12, "Hz²/s"),
    "sync.beacon_ladder": (0, 6, "rungs"),
}
_LINK_BOUNDS = ("delay_samples", "path_loss_db", "cfo_ppm", "sco_ppm", "phase_noise_linewidth_hz", "doppler_hz",
                "delay_spread_s")


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _check_value(source: str, key: str, value, lo, hi, unit: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    mag = abs(value) if isinstance(value, complex) else value
    if isinstance(value, complex) and key.endswith("gain"):
        lo = 0.0
    if not (isinstance(mag, (int, float)) and lo <= mag <= hi):
        raise ConfigError(f"{source}: {key} = {value!r}: expected {_fmt(lo)} <= {key.rsplit('.', 1)[-1]} <= "
                          f"{_fmt(hi)} {unit}".rstrip())


def check_bounds(cfg: LabConfig) -> None:
    """Physical and resource bounds (:data:`BOUNDS`) and the cross-field limits that need two sections:

    * ``|cfo_ppm| * 1e-6 * center_freq < sample_rate / 2`` (a larger offset aliases: the receiver cannot see it);
    * ``doppler_hz`` and ``phase_noise_linewidth_hz`` below ``sample_rate / 2``.

    Raises :class:`ConfigError` naming file, key, value and the allowed range."""
    roots = {"radio": cfg.radio, "air": cfg.air, "sync": cfg.sync, "ofdm": cfg.ofdm}
    for key, (lo, hi, unit) in BOUNDS.items():
        parts = key.split(".")
        obj = cfg.radio_args if parts[:2] == ["radio", "args"] else roots.get(parts[0])
        if obj is None:
            continue
        value = getattr(obj, parts[-1], None)
        _check_value(cfg.source, key, value, lo, hi, unit)
    fs, fc = cfg.radio.sample_rate, cfg.radio.center_freq
    links = []
    if cfg.air is not None:
        links.append(("air", {k: getattr(cfg.air, k, None) for k in _LINK_BOUNDS}))
        for name, over in (getattr(cfg.air, "links", None) or {}).items():
            key = f"air.links[{name!r}]"
            for field in _LINK_BOUNDS:
                if field in over:
                    lo, hi, unit = BOUNDS[f"air.{field}"]
                    _check_value(cfg.source, f"{key}.{field}", over[field], lo, hi, unit)
            if "gain" in over:
                _check_value(cfg.source, f"{key}.gain", over["gain"], *BOUNDS["air.gain"])
            links.append((key, over))
    for key, params in links:
        cfo = params.get("cfo_ppm")
        if isinstance(cfo, (int, float)) and abs(cfo) * 1e-6 * fc >= fs / 2:
            raise ConfigError(f"{cfg.source}: {key}.cfo_ppm = {cfo!r}: an offset of {abs(cfo) * 1e-6 * fc:.4g} Hz at "
                              f"radio.center_freq = {fc:g} Hz; expected |cfo_ppm| * 1e-6 * center_freq below "
                              f"sample_rate / 2 = {fs / 2:g} Hz")
        for field in ("doppler_hz", "phase_noise_linewidth_hz"):
            v = params.get(field)
            if isinstance(v, (int, float)) and v >= fs / 2:
                raise ConfigError(f"{cfg.source}: {key}.{field} = {v!r}: expected below sample_rate / 2 = "
                                  f"{fs / 2:g} Hz")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"radio.args.uri=ip:127.0.0.1"`` -> (["radio", "args", "uri"], "ip:127.0.0.1"); values parse as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set radio.sample_rate=10e6")
    keys = key.strip().split(".")
    if any(not k.strip() or not _KEY.fullmatch(k.strip()) for k in keys):
        raise ConfigError(f"--set {text!r}: key {key.strip()!r}; expected dotted names of letters, digits, '_' "
                          f"and '-', e.g. radio.args.uri")
    if len(raw) > MAX_SET_CHARS:
        raise ConfigError(f"--set {key.strip()}: value of {len(raw)} characters; expected at most {MAX_SET_CHARS}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        why = " ".join(str(exc).split())
        raise ConfigError(f"--set {key.strip()}={raw!r}: value is not valid YAML ({why}); expected a number, a "
                          f"string, true/false, null, a [list] or a {{mapping}}") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):  # YAML 1.1 reads 10e6 as a string
        value = float(value)
    _check_size(value, f"--set {key.strip()}")
    return [k.strip() for k in keys], value


def load_raw(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, str]:
    """Read YAML (or start empty) and apply ``--set`` overrides; returns (dict, source name for messages)."""
    source = str(path) if path else "<defaults>"
    data: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: config file not found")
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{source}: {size} bytes; expected a config file of at most {MAX_CONFIG_BYTES} bytes")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        except (UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"{source}: not a readable YAML text file ({type(exc).__name__}); expected UTF-8 "
                              f"YAML") from None
        _check_size(data, source)
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}), "
                              f"got {type(data).__name__}")
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            if node.get(k) is None:  # absent, or an empty YAML section (`radio:` with nothing under it)
                node[k] = {}
            node = node[k]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {k!r} is not a section (it holds {node!r})")
        node[keys[-1]] = value
    unknown = sorted(set(data) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(f"{source}: unknown section {unknown[0]!r}{_did_you_mean(unknown[0], SECTIONS)}; "
                          f"allowed sections: {', '.join(SECTIONS)}")
    return data, source


@dataclasses.dataclass
class LabConfig:
    """A whole bench configuration: each attribute is its section's validated dataclass, or None when the package
    that owns the schema is not installed and the file does not use that section (see :func:`load_config`)."""

    source: str
    radio: Any
    air: Any
    ofdm: Any
    sync: Any
    radio_args: Any
    raw: dict


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> LabConfig:
    """Load and validate a bench config; raises ConfigError naming file, key, value and what is allowed."""
    data, source = load_raw(path, overrides)
    sections = {}
    for name, spec in SECTIONS.items():
        try:
            schema = _load_schema(spec)
        except SchemaUnavailable as exc:
            if name in data:
                raise ConfigError(f"{source}: section {name!r} cannot be checked: its schema {spec} is not "
                                  f"available ({exc}); remove the section or install the package that provides "
                                  f"it") from None
            sections[name] = None  # the section is not used and its package is absent: nothing to validate
            continue
        sections[name] = build(schema, data.get(name), f"{source}: {name}")
    radio = sections["radio"]
    spec = DRIVER_ARGS[radio.driver]
    try:
        args_cls = _load_schema(spec)
    except SchemaUnavailable as exc:
        if radio.args:
            raise ConfigError(f"{source}: radio.args cannot be checked for driver {radio.driver!r}: its schema "
                              f"{spec} is not available ({exc})") from None
        radio_args = None
    else:
        radio_args = build(args_cls, radio.args, f"{source}: radio.args")
    cfg = LabConfig(source=source, radio_args=radio_args, raw=data, **sections)
    check_bounds(cfg)
    return cfg
