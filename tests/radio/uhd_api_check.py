"""Check a recorded use of UHD's Python API against the real python3-uhd (run with the Python that has ``uhd``).

Reads the JSON of ``tests.radio.uhd_double.ApiLog.to_json()`` on stdin and prints ``{"checked": N, "problems":
[...]}``. Every UHD name the driver touched must exist; every type it constructed is constructed for real with the
same arguments; every attribute it set is set on a real instance; every method it called must exist on the real
class and accept the recorded arguments (count and types, from pybind11's signature in ``__doc__``, or
``inspect.signature`` for methods written in Python) and return what the double returned.
No hardware is needed: nothing here opens a device.
"""

from __future__ import annotations

import inspect
import json
import re
import sys

import numpy as np
import uhd


def resolve_type(name: str):
    for ns in (uhd.types, uhd.usrp):
        if hasattr(ns, name):
            return getattr(ns, name)
    raise LookupError(f"no class {name!r} in uhd.types or uhd.usrp")


def build(desc):
    """Rebuild a recorded argument with the real UHD types."""
    if desc is None:
        return None
    (kind, value), = ((k, v) for k, v in desc.items() if k in ("bool", "int", "float", "str", "list", "ndarray",
                                                                "enum", "obj"))
    if kind in ("bool", "int", "float", "str"):
        return value
    if kind == "list":
        return [build(v) for v in value]
    if kind == "ndarray":
        return np.zeros(desc["shape"], dtype=value)
    if kind == "enum":
        return getattr(getattr(uhd.types, value), desc["name"])
    cls = resolve_type(value)
    made = desc["made"]
    obj = cls.from_ticks(*map(build, made["from_ticks"])) if "from_ticks" in made else cls(*map(build, made["ctor"]))
    for attr, v in desc.get("sets", {}).items():
        setattr(obj, attr, build(v))
    return obj


def _split_params(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<":
            depth += 1
        elif ch in "])>":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def pybind_overloads(func, name: str) -> list[tuple[list[tuple[str, bool]], str]]:
    """[(params as (type, has_default), return type)] for each overload in a pybind11 docstring (self dropped)."""
    found = []
    for m in re.finditer(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> (.+)$", func.__doc__ or "", re.M):
        params = []
        for p in _split_params(m.group(1)):
            pname, _, rest = p.partition(": ")
            if pname == "self":
                continue
            ptype, _, default = rest.partition(" = ")
            params.append((ptype.strip(), bool(default)))
        found.append((params, m.group(2).strip()))
    return found


def _short(type_text: str) -> str:
    """'uhd.libpyuhd.types.time_spec' / 'uhd::stream_args_t' -> 'time_spec' / 'stream_args'."""
    short = re.split(r"\.|::", type_text)[-1]
    return short[:-2] if short.endswith("_t") else short


def accepts(ptype: str, desc) -> bool:
    """Would pybind11 convert the recorded argument to ``ptype``?"""
    if ptype == "object":
        return True
    kind = next(iter(desc))
    simple = {"float": ("float", "int"), "int": ("int",), "str": ("str",), "bool": ("bool",),
              "complex": ("float", "int")}
    if ptype in simple:
        return kind in simple[ptype]
    if ptype.startswith("List["):
        return kind == "list"
    if kind in ("obj", "enum"):
        return type(build(desc)).__name__ == _short(ptype)
    return False


def returns(ret_type: str, recorded: str | None) -> bool:
    if recorded is None or ret_type == "None":
        return True
    if recorded in ("bool", "int", "float", "str"):
        return ret_type == recorded
    if recorded == "list":
        return ret_type.startswith("List[")
    return _short(ret_type) == resolve_type(recorded).__name__


def check_call(owner: str, method: str, args: list, ret: str | None) -> str | None:
    cls = resolve_type(owner)
    func = getattr(cls, method, None)
    if func is None:
        return f"{owner}.{method} does not exist in the real UHD"
    overloads = pybind_overloads(func, method)
    if not overloads:  # written in Python (e.g. MultiUSRP.__init__): bind the arguments
        try:
            inspect.signature(func).bind(*([None] if method == "__init__" else []), *map(build, args))
        except TypeError as exc:
            return f"{owner}.{method}{tuple(args)}: {exc}"
        return None
    reasons = []
    for params, ret_type in overloads:
        required = sum(1 for _, has_default in params if not has_default)
        if not required <= len(args) <= len(params):
            reasons.append(f"takes {required}..{len(params)} arguments, got {len(args)}")
        elif not all(accepts(p, a) for (p, _), a in zip(params, args)):
            reasons.append(f"argument types {[p for p, _ in params]} do not accept {args}")
        elif not returns(ret_type, ret):
            reasons.append(f"returns {ret_type}, the double returned {ret}")
        else:
            return None
    return f"{owner}.{method}: no overload fits: " + "; ".join(reasons)


def main() -> None:
    log = json.load(sys.stdin)
    problems, checked = [], 0
    for name in log["names"]:
        obj = uhd
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            problems.append(f"uhd.{name} does not exist")
        checked += 1
    instances = {}
    for type_name, args in log["constructed"]:
        checked += 1
        cls = resolve_type(type_name)
        if type_name == "MultiUSRP":  # needs a device: check the signature only
            problem = check_call(type_name, "__init__", args, None)
            if problem:
                problems.append(problem)
            continue
        try:
            instances.setdefault(type_name, cls(*map(build, args)))
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            problems.append(f"{type_name}{tuple(args)} cannot be constructed: {exc}")
    for owner, attr, value in log["sets"]:
        checked += 1
        inst = instances.get(owner)
        if inst is None:
            problems.append(f"{owner}.{attr} set on a type the driver never constructed")
            continue
        try:
            setattr(inst, attr, build(value))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{owner}.{attr} = {value}: {exc}")
    for owner, attr in log["gets"]:
        checked += 1
        if not hasattr(resolve_type(owner), attr):
            problems.append(f"{owner}.{attr} (read) does not exist")
    for owner, method, args, ret in log["calls"]:
        checked += 1
        problem = check_call(owner, method, args, ret)
        if problem:
            problems.append(problem)
    print(json.dumps({"checked": checked, "problems": sorted(set(problems))}))


if __name__ == "__main__":
    main()
