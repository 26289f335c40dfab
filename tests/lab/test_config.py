"""The bench config loader (lab/config.py): YAML → validated dataclasses, ``--set`` overrides, and error messages that
name the file, the dotted key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Literal

import pytest

from lab import config as cfgmod
from lab.config import ConfigError, build, load_config, load_raw, parse_override


@dataclasses.dataclass
class _Inner:
    mode: Literal["a", "b"] = "a"
    count: int = 1


@dataclasses.dataclass
class _Schema:
    rate: float = 1.0
    name: str = "x"
    flag: bool = False
    maybe: int | None = None
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    pair: tuple[int, int] = (0, 0)

    def __post_init__(self):
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")


@pytest.fixture
def fake_sections(monkeypatch):
    """Replace the real section schemas by small ones, so that these tests do not depend on other packages."""
    mod = types.ModuleType("_otalab_fake_schema")
    mod.Schema = _Schema
    mod.Args = _Inner
    monkeypatch.setitem(sys.modules, "_otalab_fake_schema", mod)
    monkeypatch.setattr(cfgmod, "SECTIONS", {"radio": "lab.config:RadioSection", "air": "_otalab_fake_schema:Schema",
                                             "ofdm": "_otalab_missing_pkg.ofdm:Section",
                                             "sync": "_otalab_fake_schema:NoSuchClass"})
    monkeypatch.setattr(cfgmod, "DRIVER_ARGS", {"loopback": "_otalab_fake_schema:Args", "zmq": "_otalab_nope:Args",
                                                "pluto": "_otalab_nope:Args", "usrp": "_otalab_nope:Args"})


def _write(tmp_path, text: str):
    p = tmp_path / "bench.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_build_converts_and_nests():
    obj = build(_Schema, {"rate": "10e6", "inner": {"mode": "b", "count": 3.0}, "pair": [1, 2], "maybe": None})
    assert obj.rate == 10e6 and obj.inner == _Inner("b", 3) and obj.pair == (1, 2) and obj.maybe is None


@pytest.mark.parametrize("data, fragments", [
    ({"rat": 1.0}, ["where.rat", "unknown key 'rat'", "did you mean 'rate'", "allowed keys: flag, inner"]),
    ({"rate": "fast"}, ["where.rate = 'fast'", "expected a number"]),
    ({"flag": "yes"}, ["where.flag = 'yes'", "expected true or false"]),
    ({"inner": {"mode": "c"}}, ["where.inner.mode = 'c'", "expected one of 'a', 'b'"]),
    ({"inner": {"count": 1.5}}, ["where.inner.count = 1.5", "expected an integer"]),
    ({"inner": {"count": float("inf")}}, ["where.inner.count = inf", "expected an integer"]),
    ({"inner": {"count": float("nan")}}, ["where.inner.count = nan", "expected an integer"]),
    ({"maybe": "x"}, ["where.maybe = 'x'", "expected int or null"]),
    ({"pair": [1]}, ["where.pair = [1]", "expected a list of 2 items"]),
    ({"rate": -1.0}, ["where:", "rate must be > 0, got -1.0"]),
    ({"inner": 5}, ["where.inner = 5", "expected a mapping with keys ['count', 'mode']"]),
])
def test_build_errors_name_key_value_and_allowed(data, fragments):
    with pytest.raises(ConfigError) as info:
        build(_Schema, data, "where")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_parse_override_values_parse_as_yaml():
    assert parse_override("radio.sample_rate=10e6") == (["radio", "sample_rate"], 10e6)
    assert parse_override("radio.center_freq=2.45e9") == (["radio", "center_freq"], 2.45e9)
    assert parse_override("radio.args.uri=ip:127.0.0.1") == (["radio", "args", "uri"], "ip:127.0.0.1")
    assert parse_override("air.flag=true") == (["air", "flag"], True)
    assert parse_override("air.name=") == (["air", "name"], "")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("radio.sample_rate")


def test_malformed_yaml_names_the_file(tmp_path, fake_sections):
    path = _write(tmp_path, "radio:\n  driver: [loopback\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "not valid YAML" in str(info.value)


def test_missing_file_and_non_mapping(tmp_path, fake_sections):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(_write(tmp_path, "- radio\n- air\n"))


def test_unknown_section_and_key_name_file(tmp_path, fake_sections):
    path = _write(tmp_path, "radoi:\n  driver: loopback\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "unknown section 'radoi'" in msg and "did you mean 'radio'" in msg
    path = _write(tmp_path, "radio:\n  sample_rat: 1e6\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}: radio.sample_rat: unknown key 'sample_rat'" in str(info.value)


def test_wrong_value_names_file_key_value_allowed(tmp_path, fake_sections):
    path = _write(tmp_path, "radio:\n  driver: hackrf\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}: radio.driver = 'hackrf': expected one of 'loopback', 'zmq', 'pluto', "
                               f"'usrp'")
    with pytest.raises(ConfigError, match=r"radio: sample_rate must be > 0 Hz, got -5.0"):
        load_config(_write(tmp_path, "radio:\n  sample_rate: -5\n"))


def test_precedence_defaults_yaml_set(tmp_path, fake_sections):
    path = _write(tmp_path, "radio:\n  sample_rate: 1e6\n  rx_gain: 10\nair:\n  rate: 3\n")
    cfg = load_config(path, ["radio.rx_gain=20", "air.inner.mode=b"])
    assert cfg.radio.sample_rate == 1e6          # YAML over default
    assert cfg.radio.rx_gain == 20.0             # --set over YAML
    assert cfg.radio.center_freq == 2.4e9        # default
    assert cfg.air.rate == 3.0 and cfg.air.inner.mode == "b"
    assert cfg.radio_args == _Inner()            # loopback's args schema with defaults
    assert cfg.source == str(path)


def test_set_into_empty_section_and_bad_set(tmp_path, fake_sections):
    cfg = load_config(_write(tmp_path, "radio:\n"), ["radio.tx_gain=5"])
    assert cfg.radio.tx_gain == 5.0
    with pytest.raises(ConfigError, match=r"'sample_rate' is not a section"):
        load_config(_write(tmp_path, "radio:\n  sample_rate: 1e6\n"), ["radio.sample_rate.x=1"])
    with pytest.raises(ConfigError, match=r"<defaults>: radio.args.count = 'many': expected an integer"):
        load_config(None, ["radio.args.count=many"])


def test_absent_schema_module_is_skipped_only_when_section_unused(tmp_path, fake_sections):
    cfg = load_config(None)
    assert cfg.ofdm is None and cfg.sync is None   # schema module / class absent, section unused
    path = _write(tmp_path, "ofdm:\n  preset: wifi64\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "section 'ofdm'" in msg and "_otalab_missing_pkg.ofdm:Section" in msg
    with pytest.raises(ConfigError, match="section 'sync'.*has no class 'NoSuchClass'"):
        load_config(None, ["sync.x=1"])


def test_absent_driver_args_schema(tmp_path, fake_sections):
    cfg = load_config(None, ["radio.driver=usrp"])
    assert cfg.radio.driver == "usrp" and cfg.radio_args is None
    with pytest.raises(ConfigError, match=r"radio.args cannot be checked for driver 'usrp'"):
        load_config(None, ["radio.driver=usrp", "radio.args.args=type=b200"])


def test_broken_schema_module_is_not_hidden(monkeypatch):
    """A schema module that exists but imports a missing dependency is a bug and must surface as itself."""
    def import_module(name):
        raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")
    monkeypatch.setattr(cfgmod.importlib, "import_module", import_module)
    with pytest.raises(ModuleNotFoundError, match="some_dependency"):
        cfgmod._load_schema("radio.sim.air:AirConfig")


def test_real_sections_load_defaults():
    """With the real schemas: an empty config is valid whatever packages are present."""
    cfg = load_config(None)
    assert cfg.radio.driver == "loopback"


def test_load_raw_keeps_source_name(tmp_path):
    data, source = load_raw(None, ["radio.center_freq=915e6"])
    assert source == "<defaults>" and data == {"radio": {"center_freq": 915e6}}
