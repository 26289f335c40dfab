"""The cell's NMSE of an over-the-air sum counts the devices whose bursts left, not those the PS planned for."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from lab.experiments.cell_run import sum_error


def _round(sent: dict, values: dict, estimate):
    return SimpleNamespace(active=[0, 1, 2], estimate=np.asarray(estimate, np.complex64),
                           stats={d: {"sent": s} for d, s in sent.items()}, values=values)


def test_a_device_whose_burst_never_left_is_not_an_error_of_the_sum():
    run = SimpleNamespace(diagnostics=True, devices=["a", "b", "c"])
    x = {d: np.full(4, v, np.complex64) for d, v in (("a", 1.0), ("b", 2.0), ("c", 4.0))}
    noise = np.array([0.1, -0.1, 0.1j, -0.1j], np.complex64)
    est = x["a"] + x["b"] + noise                         # c's burst was late at its node: not on the air
    err, ref = sum_error(_round({"a": True, "b": True, "c": False}, x, est), run)
    assert np.isclose(err, 4 * 0.01) and np.isclose(ref, 4 * 9.0)
    err_all, _ = sum_error(_round({"a": True, "b": True, "c": True}, x, est), run)
    assert np.isclose(err_all, 4 * 16.0, rtol=1e-3)        # had c sent, its absence would be the error


def test_no_values_or_no_diagnostics_or_a_non_finite_estimate_give_none():
    x = {d: np.ones(2, np.complex64) for d in "abc"}
    ok = {"a": True, "b": True, "c": True}
    assert sum_error(_round(ok, x, np.ones(2)), SimpleNamespace(diagnostics=False, devices=list("abc"))) is None
    run = SimpleNamespace(diagnostics=True, devices=list("abc"))
    assert sum_error(_round(ok, {"a": x["a"]}, np.ones(2)), run) is None
    assert sum_error(_round(ok, x, [np.nan, 1]), run) is None


def test_the_lead_follows_control_plane_time_not_the_air_wait_of_data_rounds():
    """A data round's devices answer after their bursts left: its air wait is not round-trip time, or the lead would
    feed on itself; old rounds stop counting (the setup round always counts)."""
    from lab.experiments.cell_run import CellRun

    run = CellRun.__new__(CellRun)
    run._lead_given, run.min_lead_s, run.max_lead_s, run.fs, run.events = False, 2.0, 90.0, 1000.0, []
    run.control_rounds = [{"what": "setup", "seconds": 6.0}, {"what": "prach", "seconds": 9.0},
                          {"what": "rar", "seconds": 8.0},
                          {"what": "pilots+data", "seconds": 70.0, "air_wait_s": 60.0}]
    run._adapt_lead()
    assert run.lead == 2 * 10.0 * 1000         # 2 x max(setup 6, prach 9, rar 8, data 70 - 60)
    run.control_rounds += [{"what": "pilots+data", "seconds": 27.0, "air_wait_s": 20.0}] * 3
    run._adapt_lead()
    assert run.lead == 2 * 7.0 * 1000          # the access rounds have aged out; setup (6) still counts
