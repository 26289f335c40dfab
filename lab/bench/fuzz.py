"""Fuzzing as a benchmark: feed hostile inputs to the receiver, the config loader and the checkpoint reader for a while.

``otalab bench fuzz [--minutes M] [--seed S] [--json PATH]`` cycles through three fuzzers until M minutes (default 1)
have passed and prints ``{"benchmark": "fuzz", "results": [...]}``, one record per fuzzer with ``cases`` tried,
``failures`` and up to 5 failing cases (enough to replay: seed and case number).

* **receiver**: :class:`phy.Receiver` (wifi64) fed random blocks (Gaussian noise of random power, zeros, constants,
  NaN/Inf sprinkles, huge values, impulses, real frames with corrupted samples, repeated preambles, chopped frames)
  in random block sizes. A failure is an exception, or a frame with a valid CRC whose payload was never sent.
* **config**: :func:`lab.config.load_config` on random ``--set`` overrides (random dotted keys from the schemas and
  junk keys; values of every YAML type, huge/tiny/non-finite numbers, malformed YAML, SI strings). A failure is any
  exception other than :class:`~lab.config.ConfigError`, or an accepted config whose values break the bounds.
* **checkpoint**: a small DeepJSCC checkpoint with one random byte flipped, truncated or extended. A failure is a
  load that succeeds (the hash must catch every change) or any exception other than CheckpointError.

The same case generators serve ``tests/hostile`` with a small fixed budget (:func:`receiver_case`,
:func:`config_case`).
"""

from __future__ import annotations

from lab.bench import report
import argparse
import math
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

RECEIVER_KINDS = ("noise", "zeros", "constant", "nonfinite", "huge", "impulses", "corrupt_frame", "preambles",
                  "chopped_frame", "tiny")


def _frames(seed: int):
    from phy.frame import FrameBuilder
    from phy.ofdm import OfdmConfig

    cfg = OfdmConfig.preset("wifi64")
    rng = np.random.default_rng([seed, 1])
    fb = FrameBuilder(cfg)
    payload = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    return cfg, fb, payload, fb.build_digital(payload, seq=int(rng.integers(0, 256)), modem="qpsk", code_rate=None)


def receiver_case(seed: int, kind: str, n: int = 6000) -> tuple[np.ndarray, set[bytes]]:
    """One hostile stream for the receiver: (complex samples [~n], payloads legitimately inside it)."""
    rng = np.random.default_rng([seed, 7])
    cplx = lambda m, s=1.0: (rng.standard_normal(m) + 1j * rng.standard_normal(m)) * s  # noqa: E731
    sent: set[bytes] = set()
    if kind == "noise":
        x = cplx(n, 10 ** rng.uniform(-6, 3))
    elif kind == "zeros":
        x = np.zeros(n, np.complex64)
    elif kind == "constant":
        x = np.full(n, complex(*rng.standard_normal(2)) * 10 ** rng.uniform(-3, 3))
    elif kind == "nonfinite":
        x = cplx(n)
        idx = rng.integers(0, n, max(1, n // 50))
        x[idx] = rng.choice([np.nan, np.inf, -np.inf, complex(np.nan, np.inf)], idx.size)
    elif kind == "huge":
        x = cplx(n, 10 ** rng.uniform(20, 300))
    elif kind == "impulses":
        x = cplx(n, 1e-3)
        x[rng.integers(0, n, 20)] = 1e6
    elif kind == "tiny":
        x = cplx(int(rng.integers(1, 200)))
    else:
        cfg, fb, payload, frame = _frames(seed)
        if kind == "corrupt_frame":          # a real frame whose samples are partly overwritten by junk
            f = frame.copy()
            lo = int(rng.integers(0, f.size))
            hi = min(f.size, lo + int(rng.integers(1, f.size // 2 + 2)))
            f[lo:hi] = cplx(hi - lo, float(np.std(f)) * rng.uniform(0.5, 3))
            x = np.concatenate([cplx(300, 0.01), f, cplx(300, 0.01)])
            sent.add(payload)                 # intact payload may still legitimately decode
        elif kind == "preambles":            # the preamble repeated with junk after it (no valid header)
            pre = frame[:int(rng.integers(160, 400))]
            x = np.concatenate([np.concatenate([pre, cplx(int(rng.integers(0, 400)), 0.3)]) for _ in range(6)])
        else:                                 # chopped_frame: a real frame cut off at a random point
            cut = int(rng.integers(1, frame.size))
            x = np.concatenate([cplx(200, 0.01), frame[:cut]])
            sent.add(payload)
    return np.asarray(x), sent


def run_receiver_case(x: np.ndarray, sent: set[bytes], seed: int) -> str | None:
    """Feed ``x`` in random block sizes; returns a failure description or None."""
    from phy.ofdm import OfdmConfig
    from phy.receiver import Receiver

    rng = np.random.default_rng([seed, 9])
    rx = Receiver(OfdmConfig.preset("wifi64"))
    pos, t = 0, int(rng.integers(0, 1 << 40))
    try:
        while pos < x.size:
            m = int(rng.integers(1, 4096))
            for fr in rx.process(x[pos:pos + m], t + pos):
                if fr.kind == "digital" and fr.crc_ok and fr.payload not in sent:
                    return f"false frame with valid CRC (seq {fr.seq}, {len(fr.payload or b'')} bytes)"
                if fr.kind == "analog" and not sent:
                    return f"false analog frame from junk (seq {fr.seq})"
            pos += m
    except Exception:  # noqa: BLE001 - any exception is the finding
        return "exception: " + traceback.format_exc(limit=3).strip().splitlines()[-1]
    return None


# ----------------------------------------------------------------------------------------------- config fuzz
_JUNK_VALUES = ["1e400", "-1e400", ".nan", ".inf", "-.inf", "[1", "{a: 1", "!!python/object:os.system ls", "1e18",
                "99999999999999999999999999", "-1", "0", "''", "null", "true", "[1, 2, 3]", "{1: 2}", "{a->b: {}}",
                "2.4G", "20M", "500k", "1e300", "1e-300", "0x10", "&a [*a]", "é", "\x00", "'" * 3, "a" * 2000,
                "{a->b: {cfo_ppm: 1e9}}", "{a->b: {delay_samples: 1e15}}", "1_000", "nan", "inf", "--", "=", "\t"]


def _schema_keys() -> list[str]:
    import dataclasses

    from lab.config import BOUNDS, DRIVER_ARGS, SECTIONS, _load_schema
    keys = set(BOUNDS)
    for name, spec in SECTIONS.items():
        try:
            keys |= {f"{name}.{f.name}" for f in dataclasses.fields(_load_schema(spec))}
        except ImportError:
            pass
    for spec in DRIVER_ARGS.values():
        try:
            keys |= {f"radio.args.{f.name}" for f in dataclasses.fields(_load_schema(spec))}
        except ImportError:
            pass
    return sorted(keys)


def config_case(seed: int, keys: list[str] | None = None) -> list[str]:
    """1-3 random ``--set`` overrides (schema keys or junk keys, hostile or ordinary values)."""
    rng = np.random.default_rng([seed, 11])
    keys = keys or _schema_keys()
    out = []
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        if r < 0.8:
            key = keys[int(rng.integers(len(keys)))]
        elif r < 0.9:
            key = rng.choice(["radio", "air.links.a->b.cfo_ppm", "x.y", "radio..a", "1", "radio.args", ""])
        else:
            key = "".join(chr(int(c)) for c in rng.integers(33, 127, int(rng.integers(1, 12))))
        v = rng.random()
        if v < 0.5:
            value = _JUNK_VALUES[int(rng.integers(len(_JUNK_VALUES)))]
        elif v < 0.8:
            value = repr(float(10 ** rng.uniform(-30, 30) * rng.choice([-1, 1])))
        else:
            value = str(int(rng.integers(-(1 << 62), 1 << 62)))
        out.append(f"{key}={value}")
    return out


def run_config_case(overrides: list[str], driver: str | None = None) -> str | None:
    """load_config with ``overrides``; a failure is a non-ConfigError exception or an out-of-bounds accepted value."""
    from lab.config import ConfigError, check_bounds, load_config

    sets = ([f"radio.driver={driver}"] if driver else []) + list(overrides)
    try:
        cfg = load_config(None, sets)
    except ConfigError:
        return None
    except Exception:  # noqa: BLE001
        return "exception: " + traceback.format_exc(limit=3).strip().splitlines()[-1]
    try:
        check_bounds(cfg)
        for obj in (cfg.radio, cfg.air, cfg.sync, cfg.radio_args):
            for k, v in vars(obj or {}).items() if obj is not None else ():
                if isinstance(v, float) and not math.isfinite(v):
                    return f"accepted non-finite {k} = {v}"
    except ConfigError as exc:
        return f"accepted out of bounds: {exc}"
    return None


# ------------------------------------------------------------------------------------------- checkpoint fuzz
def _checkpoint_bytes(tmp: Path) -> bytes:
    import torch

    from learning.jscc.checkpoint import save_checkpoint
    from learning.jscc.models import build_model
    torch.manual_seed(0)
    return save_checkpoint(tmp / "ref.pt", build_model("adjscc", 8, (4, 4, 4, 4)), {"fuzz": True}).read_bytes()


def run_checkpoint_case(ref: bytes, seed: int, tmp: Path) -> str | None:
    from learning.jscc.checkpoint import CheckpointError, load_checkpoint
    rng = np.random.default_rng([seed, 13])
    blob = bytearray(ref)
    op = rng.choice(["flip", "truncate", "extend"])
    if op == "flip":
        i = int(rng.integers(len(blob)))
        blob[i] ^= int(rng.integers(1, 256))
    elif op == "truncate":
        blob = blob[:int(rng.integers(0, len(blob)))]
    else:
        blob += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    path = tmp / f"case{seed % 4}.pt"
    path.write_bytes(bytes(blob))
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        return None if str(path) in str(exc) else f"message does not name the file: {exc}"
    except Exception:  # noqa: BLE001
        return "exception: " + traceback.format_exc(limit=3).strip().splitlines()[-1]
    return f"{op} accepted"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="otalab bench fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="wall-clock budget for all fuzzers together")
    ap.add_argument("--seed", type=int, default=0, help="first case seed (cases are seed, seed+1, ...)")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON record here")
    args = ap.parse_args(argv)
    if not (math.isfinite(args.minutes) and 0 < args.minutes <= 24 * 60):
        ap.error(f"--minutes {args.minutes}: expected 0 < M <= 1440")
    deadline = time.monotonic() + 60.0 * args.minutes
    cpu0 = time.process_time()
    keys = _schema_keys()
    stats = {name: {"fuzzer": name, "cases": 0, "failures": 0, "examples": []}
             for name in ("receiver", "config", "checkpoint")}

    def record(name, case, failure):
        s = stats[name]
        s["cases"] += 1
        if failure:
            s["failures"] += 1
            if len(s["examples"]) < 5:
                s["examples"].append({"case": case, "failure": failure})

    with tempfile.TemporaryDirectory(prefix="otalab-fuzz-") as tmpdir:
        tmp = Path(tmpdir)
        ref = _checkpoint_bytes(tmp)
        seed = args.seed
        drivers = [None, "loopback", "zmq", "pluto", "usrp"]
        while time.monotonic() < deadline:
            kind = RECEIVER_KINDS[seed % len(RECEIVER_KINDS)]
            x, sent = receiver_case(seed, kind)
            record("receiver", {"seed": seed, "kind": kind}, run_receiver_case(x, sent, seed))
            for j in range(4):
                sets = config_case(seed * 4 + j, keys)
                driver = drivers[(seed + j) % len(drivers)]
                record("config", {"seed": seed * 4 + j, "driver": driver, "set": sets},
                       run_config_case(sets, driver))
            record("checkpoint", {"seed": seed}, run_checkpoint_case(ref, seed, tmp))
            seed += 1
    out = {"benchmark": "fuzz", "minutes": args.minutes, "cpu_s": round(time.process_time() - cpu0, 1),
           "results": list(stats.values())}
    return report(out, args.json)


if __name__ == "__main__":
    main()
