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
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer()))):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        return float(value)
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


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"radio.args.uri=ip:127.0.0.1"`` -> (["radio", "args", "uri"], "ip:127.0.0.1"); values parse as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set radio.sample_rate=10e6")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):  # YAML 1.1 reads 10e6 as a string
        value = float(value)
    return key.strip().split("."), value


def load_raw(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, str]:
    """Read YAML (or start empty) and apply ``--set`` overrides; returns (dict, source name for messages)."""
    source = str(path) if path else "<defaults>"
    data: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: config file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
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
    return LabConfig(source=source, radio_args=radio_args, raw=data, **sections)
