"""The PS actor and the device actors (sync/ps.py, sync/device.py), their messages (sync/messages.py) and the
in-process orchestrator (sync/procedure.py) that drives them on one air."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lab.experiments.sync_trials import Scenario, build_cell, run_trial, summarize
from sync.config import SyncConfig
from sync.layout import CellLayout
from sync.messages import (AccessSlot, Beacon, CellSetup, DataRound, DeviceStats, Feedback, Msg3, Msg3Window, Msg4,
                           Rar, RarEntry, RoundPlan, parse_payload, to_payload)
from sync.procedure import SyncSession

CFG = SyncConfig()
SCN = Scenario(devices=4, snr_db=10.0, rounds=1, data_symbols=1)


# ------------------------------------------------------------------------------------------------ messages
def test_over_the_air_messages_round_trip_and_bad_bytes_are_dropped():
    rng = np.random.default_rng(0)
    taps = np.zeros((3, 24), np.complex64)
    taps[:, :5] = rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))
    fb = Feedback(0.7, taps, -4, np.array([1, -2, 0]), np.array([True, False, True]),
                  np.array([1e-3, 2e-3, 3e-3]), np.array([0.1, -0.2, 0.3]), bits=12)
    msgs = [Rar((RarEntry(3, 250, 1), RarEntry(5, 7, 0, collision=True))), Rar(), Msg3(6, 9),
            Msg4(((1, 0), (4, 2))), Msg4()]
    for m in msgs:
        assert parse_payload(to_payload(m)) == m
    back = parse_payload(to_payload(fb))
    assert isinstance(back, Feedback) and back.bits == 12 and back.first_delay == -4
    # 12 bits per real number: the quantization error is at most half a level of the per-device scale, which travels
    # as a half float rounded up (at most 2^-10 above the largest |re|, |im|)
    scale = np.max(np.abs(np.stack([taps.real, taps.imag])), axis=(0, 2)) * (1 + 2.0 ** -10)
    assert np.all(np.abs(back.taps - taps) <= scale[:, None] / (2 ** 11 - 1) * 0.5 * np.sqrt(2) + 1e-6)
    assert np.any(np.abs(back.taps - taps) > 0.1 * scale[:, None] / (2 ** 11 - 1))   # the bound is not vacuous
    # the per-device reals: TA and flags exact, error variance as float32, fractional delay to a half float's 2^-12
    np.testing.assert_allclose(back.error_var, fb.error_var, rtol=1e-6)
    assert np.all(np.abs(back.shift - fb.shift) <= 2.0 ** -12)
    np.testing.assert_array_equal(back.ta_steps, fb.ta_steps)
    np.testing.assert_array_equal(back.active, fb.active)
    assert Beacon.from_bytes(Beacon(123_456_789_012, 7).to_bytes()) == Beacon(123_456_789_012, 7)
    # truncated or foreign bytes: None (counted and dropped by the receiving actor), never an exception
    assert parse_payload(to_payload(fb)[:-3]) is None
    assert parse_payload(to_payload(Msg3(1, 2))[:-1]) is None
    assert parse_payload(b"XXXX1234") is None and parse_payload(None) is None
    assert Beacon.from_bytes(b"OTAX" + bytes(12)) is None


def test_orchestration_messages_are_dicts_of_plain_types():
    msgs = [CellSetup(8, 20e6, 33, 2, 8, True), AccessSlot(1234), Msg3Window(10, 300),
            RoundPlan(3, 5000, 33, 9000), RoundPlan(4), DataRound(3, 12000, seed=42, power_scale=0.5),
            DeviceStats(2, 3, "connected", True, 1234.5, tx_samples={"data": 160})]
    for m in msgs:
        d = json.loads(json.dumps(m.to_dict()))      # what a control plane carries: JSON-able plain values
        assert type(m).from_dict(d) == m
    with pytest.raises(ValueError, match="unknown keys"):
        AccessSlot.from_dict({"at": 1, "when": 2})


# ------------------------------------------------------------------------------------------------ actors
class _Port:
    """Only what an actor may use of its radio: time_now, tx, rx (a radio node's client offers the same)."""

    def __init__(self, radio):
        self._r = radio

    def time_now(self) -> int:
        return self._r.time_now()

    def tx(self, samples, at=None) -> int:
        return self._r.tx(samples, at)

    def rx(self, n, at=None):
        return self._r.rx(n, at)


def _session(cell, cfg=None, **kw):
    return SyncSession(cell.ps, kw.pop("radios", cell.radios), SCN.ofdm(), cfg or cell.cfg, preambles=cell.preambles,
                       data_symbols=1, rng=np.random.default_rng(1), **kw)


def test_device_actors_run_through_the_three_call_port_and_track_every_beacon():
    """Devices reach their radios only through time_now/tx/rx, and read their stream continuously: every access
    beacon reaches the tracker (a fixed receive window used to lose the first ones of a long read)."""
    cell = build_cell(SCN, CFG, 5)
    sess = _session(cell, radios=[_Port(r) for r in cell.radios])
    sess.access()
    for d in sess.devices:
        assert d.state == "connected", (d.index, d.state, sess.events)
        assert d.tracker_misses == 0
        # the first beacons and the one after the access cycle: all 4 + 1 observed
        assert len(d.tracker.obs) == CFG.beacons_before_access + 1
    x = (np.arange(SCN.devices * 48).reshape(SCN.devices, 48) % 7 - 3).astype(np.complex64)
    res = sess.data_round(x)
    assert sorted(res.active) == sorted(res.tx_local)
    assert np.sum(np.abs(res.estimate - res.truth) ** 2) / np.sum(np.abs(res.truth) ** 2) < 0.2


class _LatePort(_Port):
    """A radio whose bursts leave ``delay`` samples after the time asked (an uncalibrated TX offset), and that keeps
    what it received so that it can be read again (as a radio node's ring does); ``ahead``: its clock runs that far
    ahead of the simulated air's (time has passed since a phase, as on a radio node, and its ring holds it)."""

    def __init__(self, radio, delay: int, ahead: int = 0):
        super().__init__(radio)
        self.delay, self.ahead = delay, ahead
        self.t0 = radio.time_now()
        self.held = np.zeros(0, np.complex64)
        self.sample_rate = radio.sample_rate

    def time_now(self) -> int:
        return self._r.time_now() + self.ahead

    def rx(self, n, at=None):
        end = self.t0 + self.held.size
        at = end if at is None else at
        if at + n > end:
            x, t = self._r.rx(at + n - end, end)
            self.held = np.concatenate([self.held, x])
        return self.held[at - self.t0:at - self.t0 + n].copy(), at

    def tx(self, samples, at=None) -> int:
        return self._r.tx(samples, at + self.delay) - self.delay


def test_the_access_beacons_ladder_spaces_its_rungs_ten_times_further_each():
    """sync.beacon_ladder = 2: after the beacons_before_access one every beacon_period, two more at 10 and 100 beacon
    periods after the one before; every device's tracker sees all of them (local times, within the clocks' ±10 ppm)."""
    cell = build_cell(SCN, dataclasses.replace(CFG, beacon_ladder=2), 5)
    sess = _session(cell)
    sess.access()
    p = CFG.beacon_period
    for d in sess.devices:
        t = np.array([o.local_time for o in d.tracker.obs[:CFG.beacons_before_access + 2]])
        assert np.allclose(np.diff(t), [p] * (CFG.beacons_before_access - 1) + [10 * p, 100 * p], atol=4), np.diff(t)
    assert sess.air_time["beacon"] == (CFG.beacons_before_access + 2 + 1) * sess.ps_actor.beacon.length


def test_the_ladder_stops_before_a_gap_of_more_than_a_second():
    from sync.ps import beacon_offsets
    assert beacon_offsets(4, 3, 2000, 521_000.0) == [0, 2000, 4000, 6000, 26_000, 226_000]   # 3.8 s: left out
    assert beacon_offsets(4, 3, 2000, 20e6) == [0, 2000, 4000, 6000, 26_000, 226_000, 2_226_000]
    assert beacon_offsets(2, 0, 2000, 1e5) == [0, 2000]


def test_a_prach_slot_without_a_detection_says_where_the_preamble_was():
    """A device whose bursts leave 3000 samples late (a Pluto without TX calibration) is never detected in its PRACH
    zone; the PS's event for each such slot names the strongest expected preamble and its delay, found by
    correlating the samples around the slot, so a lab user sees the cause instead of only "access failed"."""
    scn = dataclasses.replace(SCN, devices=1, profile="none", snr_db=20.0)
    cell = build_cell(scn, CFG, 3)
    sess = SyncSession(_LatePort(cell.ps, 0, ahead=8000), [_LatePort(cell.radios[0], 3000)], scn.ofdm(), cell.cfg, preambles=cell.preambles,
                       data_symbols=1, rng=np.random.default_rng(1))
    sess.access()
    assert sess.devices[0].state != "connected"
    misses = [e for e in sess.events if "no preamble detected" in e]
    assert misses, sess.events
    true_delay = 3000 + 2 * float(cell.delays[0])     # the burst's lateness plus the round trip
    found = []     # slots where the device sent (it backs off in others: only noise there, ~10 dB for the max)
    for e in misses:
        db = float(e.split(" dB above the median")[0].rsplit(" ", 1)[1])
        k = int(e.split(" samples from the slot start")[0].rsplit(" ", 1)[1])
        if db > 20:
            found.append(k)
            assert abs(k - true_delay) <= 2 and "outside" in e, (e, true_delay)
    assert found, misses
    # the same cell with the bursts on time: no such event
    cell = build_cell(scn, CFG, 3)
    sess = _session(cell, radios=cell.radios)
    sess.access()
    assert sess.devices[0].state == "connected"
    assert not [e for e in sess.events if "no preamble detected" in e]


def test_turnaround_budgets_and_lead_move_the_schedule_by_exactly_their_size():
    """ps_turnaround delays the phases after a PS decode (RAR after PRACH, feedback after pilots) and
    device_turnaround those after a device decode (data after feedback) by exactly their budgets; a radio lead longer
    than the guard anchors every phase at time_now() + lead."""
    def schedule(cfg):
        cell = build_cell(SCN, cfg, 6)
        sess = _session(cell, cfg=dataclasses.replace(cell.cfg, lead=cfg.lead, ps_turnaround=cfg.ps_turnaround,
                                                      device_turnaround=cfg.device_turnaround))
        sess.access()
        ps = sess.ps_actor
        ps.begin_round()
        sess.send_beacons(1)
        plan = ps.plan_pilots()
        sess.refresh_channels(plan)
        fb_end = ps.t - sess.guard
        slot = ps.data_slot()
        return sess, plan, fb_end, slot

    base, plan0, fb0, slot0 = schedule(CFG)
    assert slot0.slot == fb0 + base.guard
    _, plan1, fb1, slot1 = schedule(dataclasses.replace(CFG, ps_turnaround=300, device_turnaround=500))
    end = plan1.pilots_at + base.n_pilot * SCN.ofdm().symbol_len
    assert plan1.feedback_at == end + base.guard + 300
    assert slot1.slot == fb1 + base.guard + 500
    # budgets push every later phase: the same procedure, only later
    assert plan1.pilots_at > plan0.pilots_at
    # a radio node's lead: no phase starts before time_now() + lead; devices answer in time when their turnaround
    # budget covers their own lead (docs/sync.md)
    lead = 3 * base.guard
    sess, _, _, slot2 = schedule(dataclasses.replace(CFG, lead=lead, device_turnaround=lead))
    assert slot2.slot >= sess.ps.time_now() + lead
    assert all(d.state == "connected" for d in sess.devices), sess.events
    res = sess.data_round(np.ones((SCN.devices, 48), np.complex64))
    assert res.active and sorted(res.tx_local) == sorted(res.active), sess.events
    assert not any("late" in e for e in sess.events), sess.events


def test_a_device_that_cannot_make_its_slot_counts_it_late_and_stays_out():
    """A device whose radio needs more lead than the PS's schedule leaves is late: counted, logged, nothing sent at a
    wrong time, and the PS's sum goes on with the others."""
    cell = build_cell(SCN, CFG, 8)
    sess = _session(cell)
    sess.access()
    late = sess.devices[2]
    late.cfg = dataclasses.replace(late.cfg, lead=10 * sess.guard)   # this device's radio node needs more lead
    x = np.ones((SCN.devices, 48), np.complex64)
    res = sess.data_round(x)
    assert 2 not in res.tx_local and late.late >= 1
    # its pilots were already late: the PS heard none and left it out of the plan, so it sent no data either
    assert any("device 2: pilots late" in e for e in sess.events)
    assert "no uplink pilot" in res.excluded[2]
    assert 2 not in res.active and len(res.active) >= 2 and sorted(res.active) == sorted(res.tx_local)


def test_cell_layout_is_the_same_on_both_sides():
    """Both kinds of actor derive the cell's timing from the one CellSetup message."""
    of = SCN.ofdm()
    setup = CellLayout.setup_for(of, CFG, 8, 20e6, data_symbols=2)
    a = CellLayout(of, CFG, setup)
    b = CellLayout(of, CFG, CellSetup.from_dict(json.loads(json.dumps(setup.to_dict()))))
    assert (a.guard, a.tail, a.backoff, a.n_pilot, a.prach) == (b.guard, b.tail, b.backoff, b.n_pilot, b.prach)
    np.testing.assert_array_equal(a.pilot_grid(3), b.pilot_grid(3))
    assert a.n_pilot == CFG.pilot_symbols_per_device * 8 and a.stream_hold > 0
    with pytest.raises(ValueError, match="n_pilot_symbols"):
        CellLayout(of, CFG, dataclasses.replace(setup, n_pilot_symbols=8))


# ------------------------------------------------------------------------------------------------ held-out seeds
HELD_OUT = [range(30_000, 30_100), range(40_000, 40_100), range(50_000, 50_100)]


@pytest.fixture(scope="module")
def held_out():
    """Issue #11's bar for the actor split, on seeds no test or tuning used: 3 disjoint ranges of 100 trials of the
    issue's scenario (K = 8, 10 dB, TDL-A, delays up to 20 CPs, ±10 ppm CFO and SCO, default SyncConfig), run once
    for the two tests below. Per range: (trials all inside the CP, device-trials that transmitted, NMSE, genie NMSE).
    About 1 s CPU per trial; two worker processes (CI has 2 cores)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    scn = Scenario(devices=8, snr_db=10.0, rounds=1, data_symbols=2)
    seeds = [s for r in HELD_OUT for s in r]
    n = len(seeds)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        out = {tr["seed"]: tr for tr in pool.map(run_trial, [scn] * n, [CFG] * n, seeds, chunksize=10)}
    report = {}
    for r in HELD_OUT:
        trials = [out[s] for s in r]
        s = summarize(trials, 20e6)
        ok = sum(all(t["inside_cp"] for t in tr["timing"]) for tr in trials)
        sent = sum(len(tr["timing"]) for tr in trials)
        report[r.start] = (ok, sent, s["nmse_db"], s["nmse_genie_db"])
    return report


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_held_out_seed_ranges_inside_the_cp(held_out):
    """In each range every device's data burst is inside the CP (−b ≤ e + τ_first and e + τ_last ≤ cp − b, from the
    simulation's truth) in ≥ 99.9 % of trials (so: all 100), with at least 85 % of device-trials taking part so that
    exclusions cannot hide misalignment. Measured (docs/sync.md): 100/100 in each range, 720-724 of 800 transmit."""
    for start, (ok, sent, nmse, genie) in held_out.items():
        assert ok >= 0.999 * 100, (start, held_out)
        assert sent >= 0.85 * 100 * 8, (start, held_out)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("start", [30_000, 40_000, 50_000])
def test_held_out_seed_ranges_within_1db_of_genie(held_out, start):
    """The over-the-air sum's NMSE (Σ|ŝ − s|² / Σ|s|² over the range) within 1 dB of genie sync + CSI
    (y = α_g Σ x_k + n, α_g from the true channels, same participants, power budget, threshold and noise).
    Measured (docs/sync.md): 0.30 / 0.26 / 0.15 dB over the three ranges with the Kalman beacon tracker (0.91 / 0.56
    / 0.72 dB with the tracker before it, whose CFO outliers were most of the gap: docs/sync.md, "Where the gap to
    genie goes")."""
    ok, sent, nmse, genie = held_out[start]
    assert nmse <= genie + 1.0, (start, held_out)
