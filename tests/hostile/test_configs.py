"""Odd configs: every bad value exits 2 with file/key/value/expected, never a traceback; SI suffixes parse."""

from __future__ import annotations

import pytest

from lab.config import ConfigError, load_config, parse_si

LOOPBACK = "hw_configs/loopback.yaml"
# (--set, strings the message must hold)
BAD_SETS = [
    ("air.delay_samples=1e15", ["air.delay_samples", "1000000000000000.0", "expected 0 <= delay_samples"]),
    ("air.cfo_ppm=1e300", ["air.cfo_ppm", "1e+300", "expected -1000 <= cfo_ppm <= 1000"]),
    ("air.cfo_ppm=900", ["air.cfo_ppm", "900", "sample_rate / 2"]),   # 2.16 MHz at 2.4 GHz > fs/2 = 1 MHz below
    ("radio.sample_rate=1e300", ["radio.sample_rate", "1e+300", "expected 1000 <= sample_rate"]),
    ("radio.sample_rate=1.0e400", ["radio.sample_rate", "inf", "expected a finite number"]),
    ("radio.sample_rate=.nan", ["radio.sample_rate", "nan", "expected a finite number"]),
    ("sync.beacon_period=99999999999999999999999", ["sync.beacon_period", "99999999999999999999999", "2**63"]),
    ("radio.args.max_buffer_samples=1e18", ["radio.args.max_buffer_samples", "expected 1 <= max_buffer_samples"]),
    ("air.snr_db=[1", ["--set air.snr_db", "'[1'", "not valid YAML", "expected a number"]),
    ("air.snr_db={a: 1", ["--set air.snr_db", "not valid YAML"]),
    ("radio..x=1", ["--set 'radio..x=1'", "expected dotted names"]),
    ("radio.sample_rate=20Q", ["radio.sample_rate", "'20Q'", "expected a number with an optional SI suffix"]),
    ("radio.sample_rate=20m", ["radio.sample_rate", "0.02", "expected 1000 <= sample_rate"]),   # milli, not mega
    ("radio={1: 2}", ["radio.1", "key 1 is a int", "expected a string key"]),
    ("air.links={a->b: {delay_samples: 1e15}}", ["air.links['a->b'].delay_samples", "expected 0 <= delay_samples"]),
    ("sync.prach_oversampling=1048576", ["sync.prach_oversampling", "1048576", "expected 1 <= prach_oversampling"]),
    ("air.delay_spread_s=1", ["air.delay_spread_s", "expected 0 <= delay_spread_s"]),
    ("nope=1", ["unknown section 'nope'"]),
    ("x", ["--set 'x'", "expected key=value"]),
]


@pytest.mark.parametrize("override,must", BAD_SETS, ids=[b[0][:30] for b in BAD_SETS])
def test_bad_set_values_exit_2_with_a_message(override, must, cli):
    sets = ["--set", "radio.sample_rate=2M"] if "cfo_ppm=900" in override else []
    cli(["link", "--config", LOOPBACK, "--frames", "1", "--no-progress", *sets, "--set", override], *must)


@pytest.mark.parametrize("text,where", [
    ("radio:\n  1: 2\n", "key 1 is a int"),
    ("radio:\n  sample_rate: 1.0e999\n", "expected a finite number"),
    ("a: &a [*a, *a]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}, "
                                   f"*{'a' if i == 0 else f'b{i - 1}'}]\n" for i in range(30)), "nesting deeper"),
    ("radio: [\n", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping of sections"),
    ("? [1, 2]\n: 3\n", "not valid YAML"),
    ("1: {}\n", "unknown section 1"),
])
def test_bad_config_files_exit_2(tmp_path, cli, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    cli(["sync", "--config", path], str(path), where)


def test_binary_and_huge_files(tmp_path, cli):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00radio")
    cli(["link", "--config", binary, "--frames", "1"], str(binary), "expected")
    huge = tmp_path / "huge.yaml"
    huge.write_text("#" * (2 << 20))
    cli(["link", "--config", huge, "--frames", "1"], str(huge), "expected a config file of at most")


@pytest.mark.parametrize("text,value", [("2.4G", 2.4e9), ("20M", 20e6), ("500k", 5e5), ("1.5e6", 1.5e6),
                                        ("915 MHz", 915e6), ("10MS/s", 10e6), ("250m", 0.25), ("3", 3.0),
                                        ("1_000k", 1e6), (2.5e9, 2.5e9), ("100 Hz", 100.0), ("2.4GHz", 2.4e9)])
def test_parse_si(text, value):
    assert parse_si(text, "x") == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["", "G", "2.4 G G", "1e400", "inf", "nan", "2.4X", "--1", True, "1" * 100])
def test_parse_si_rejects(text):
    with pytest.raises(ConfigError, match="^what = "):
        parse_si(text, "what")


def test_si_in_yaml_and_set(tmp_path):
    path = tmp_path / "si.yaml"
    path.write_text("radio:\n  sample_rate: 20M\n  center_freq: 2.4G\n")
    cfg = load_config(path, ["radio.center_freq=915MHz"])
    assert cfg.radio.sample_rate == 20e6 and cfg.radio.center_freq == 915e6
    with pytest.raises(ConfigError, match="air.cfo_ppm = '2k': expected a number"):  # SI only on frequencies/rates
        load_config(None, ["air.cfo_ppm=2k"])


def test_shipped_configs_still_load():
    import glob
    for path in sorted(glob.glob("hw_configs/*.yaml")):
        load_config(path)


def test_bounds_table_names_existing_fields():
    """Every key in BOUNDS is a field of its schema (a renamed field would silently lose its bound)."""
    import dataclasses

    from lab.config import BOUNDS, DRIVER_ARGS, SECTIONS, _load_schema
    fields = set()
    for name, spec in SECTIONS.items():
        fields |= {f"{name}.{f.name}" for f in dataclasses.fields(_load_schema(spec))}
    for spec in DRIVER_ARGS.values():
        fields |= {f"radio.args.{f.name}" for f in dataclasses.fields(_load_schema(spec))}
    assert set(BOUNDS) <= fields, sorted(set(BOUNDS) - fields)
