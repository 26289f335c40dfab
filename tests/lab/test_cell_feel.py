"""The learning side of ``otalab cell --task feel`` (lab.experiments.cell_feel) without radios: device learners
encode with the in-process runner's code, their values add up as the air would add them, the PS decodes with AMP."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
import torch

from lab.experiments.cell_feel import DeviceLearner, PsLearner, scale_for
from learning.feel.runner import FeelConfig

def _cfg(**kw) -> FeelConfig:
    base = dict(devices=2, samples_per_device=100, rounds=2, channel_uses=384, seed=5)
    return FeelConfig(**{**base, **kw})


def test_device_values_have_unit_mean_power_per_complex_value():
    """‖x‖² = P_t over s real symbols and c = sqrt(⌈s/2⌉/P_t) give mean |u|² = c²·P_t/⌈s/2⌉ = 1."""
    try:
        ps = PsLearner(_cfg())
    except FileNotFoundError as exc:
        pytest.skip(f"no MNIST here: {exc}")
    dev = DeviceLearner(ps.spec(0))
    u = dev.values()
    assert u.dtype == np.complex64 and u.size == ps.n_values == 192
    assert math.isclose(float(np.mean(np.abs(u) ** 2)), 1.0, rel_tol=1e-4)
    assert math.isclose(scale_for(384, 200.0), math.sqrt(192 / 200.0))


def test_the_ps_decodes_the_sum_of_device_values_and_the_error_accumulator_carries_over():
    try:
        ps = PsLearner(_cfg())
    except FileNotFoundError as exc:
        pytest.skip(f"no MNIST here: {exc}")
    acc0, _ = ps.m.model.evaluate(ps.server.theta.detach(), ps.x_test, ps.y_test)
    errors = [None, None]
    for r in range(2):
        devs = [DeviceLearner(ps.spec(i), errors[i]) for i in range(2)]
        assert [d.error_norm_in > 0 for d in devs] == [r > 0] * 2      # round 2 starts from round 1's accumulators
        total = sum(d.values() for d in devs)
        rng = np.random.default_rng(r)
        n_c = 1e-3                                                     # complex noise per value (high SNR)
        est = total + (rng.standard_normal(total.size) + 1j * rng.standard_normal(total.size)) * math.sqrt(n_c / 2)
        out = ps.receive(est.astype(np.complex64), n_c, 2)
        assert out["applied"] and math.isfinite(out["accuracy"])
        assert math.isclose(out["noise_var_real"], n_c / (2 * ps.m.c ** 2))
        errors = [d.commit({"steps": [{"op": "data", "stats": {"sent": True}}]}) for d in devs]
    acc, _ = ps.m.model.evaluate(ps.server.theta.detach(), ps.x_test, ps.y_test)
    assert acc > acc0                                   # two A-DSGD steps of a softmax model on MNIST help
    # a device that stayed silent keeps its whole update in the accumulator
    dev = DeviceLearner(ps.spec(0), errors[0])
    before = dev.fleet.error.clone()
    dev.values()
    kept = torch.from_numpy(np.frombuffer(base64.b64decode(dev.commit({"steps": []})), np.float32).copy())
    assert torch.allclose(kept, before[0] + dev._update[0], atol=1e-6)
