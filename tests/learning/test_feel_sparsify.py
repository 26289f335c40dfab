"""The fast A-DSGD device path: error-compensated top-k (numba kernel vs numpy path), the closed-form softmax
gradients, the one-pass finiteness screen and buffer reuse across rounds, against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import grad_and_value, vmap

from learning.feel import sparsify
from learning.feel.channel import RoundCsi, SymbolChannel
from learning.feel.device import DeviceFleet, report
from learning.feel.messages import GlobalModel, LocalUpdate, Schedule
from learning.feel.models import FlatModel
from learning.feel.schemes import AnalogScheme, top_k_sparsify


def _rows(seed: int = 3, m: int = 60, d: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(m, d, generator=gen) * torch.rand(m, 1, generator=gen) * 5
    g[:, ::4] = 0.0                                   # exact zeros, as in MNIST gradients
    g[2] = torch.tensor([1.5, -1.5] * (d // 2))       # every magnitude tied
    g[3, 7:] = 0.0                                    # fewer than k nonzeros
    g[4, :40] = torch.tensor([2.0, -2.0] * 20)        # ties straddling the threshold
    g[5] = 0.0                                        # all zero
    err = torch.randn(m, d, generator=gen) * 0.3
    err[2:6] = 0.0
    return g, err


def _reference(g: torch.Tensor, err: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sp_k by definition: row by row, the k largest magnitudes, ties broken by the first index."""
    ec = g + err if err is not None else g.clone()
    sp = torch.zeros_like(ec)
    for m in range(ec.shape[0]):
        row = ec[m].double().numpy()
        order = np.lexsort((np.arange(row.size), -np.abs(row)))  # by |v| descending, then index ascending
        keep = order[:k]
        keep = keep[row[keep] != 0] if k < row.size else keep
        sp[m, keep] = ec[m, keep]
    return sp, ec - sp


@pytest.mark.parametrize("use_kernel", [False, pytest.param(True, marks=pytest.mark.skipif(
    not sparsify.accelerated(), reason="numba not installed"))])
@pytest.mark.parametrize("k", [1, 37, 150, 299, 300, 400])
@pytest.mark.parametrize("with_error", [True, False])
def test_error_feedback_top_k_matches_definition(use_kernel, k, with_error):
    """payload = [sp_k(g + Delta) ; 1], new error = g + Delta - sp_k exactly (bit for bit), exactly min(k, nonzeros)
    entries per row with ties kept by first index, squared norms ||sp_k||^2."""
    g, err = _rows()
    e = err if with_error else None
    payload, new_err, sq = sparsify.error_feedback_top_k(g, e, k, use_kernel=use_kernel)
    sp, ref_err = _reference(g, e, k)
    assert torch.equal(payload[:, -1], torch.ones(g.shape[0]))
    assert torch.equal(payload[:, :-1], sp)
    assert torch.equal(new_err, ref_err)
    torch.testing.assert_close(sq.double(), (sp.double() ** 2).sum(1), rtol=1e-6, atol=0)
    nnz = (g + (e if e is not None else 0) != 0).sum(1)
    assert torch.equal((payload[:, :-1] != 0).sum(1), torch.minimum(nnz, torch.tensor(k)))


@pytest.mark.skipif(not sparsify.accelerated(), reason="numba not installed")
def test_kernel_and_numpy_path_agree_on_large_random_rows_and_write_given_buffers():
    gen = torch.Generator().manual_seed(11)
    g = torch.randn(500, 2000, generator=gen)
    err = torch.randn(500, 2000, generator=gen) * 0.1
    out_err, out_pay = torch.full((500, 2000), 7.0), torch.full((500, 2001), 7.0)
    p1, e1, s1 = sparsify.error_feedback_top_k(g, err, 500, out_err, out_pay, use_kernel=True)
    assert p1 is out_pay and e1 is out_err
    p0, e0, s0 = sparsify.error_feedback_top_k(g, err, 500, use_kernel=False)
    assert torch.equal(p1, p0) and torch.equal(e1, e0)
    torch.testing.assert_close(s1, s0, rtol=1e-5, atol=0)
    assert torch.equal(p1[:, :-1], top_k_sparsify(g + err, 500))


@pytest.mark.skipif(not sparsify.accelerated(), reason="numba not installed")
def test_kernel_keeps_non_finite_rows_apart():
    """An inf entry is the largest magnitude; the entries not kept stay exactly 0 in the payload (no inf * 0 = NaN)."""
    g = torch.arange(1.0, 11.0).repeat(2, 1)
    g[0, 3] = math.inf
    payload, new_err, _ = sparsify.error_feedback_top_k(g, None, 3, use_kernel=True)
    assert torch.equal(payload[0, :-1], torch.tensor([0, 0, 0, math.inf, 0, 0, 0, 0, 9, 10.0]))
    assert torch.equal(payload[1, :-1], torch.tensor([0, 0, 0, 0, 0, 0, 0, 8, 9, 10.0]))
    assert torch.equal(new_err[0], torch.tensor([1, 2, 3, 0, 5, 6, 7, 8, 0, 0.0]))


def test_error_feedback_top_k_input_errors():
    g = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="error has shape"):
        sparsify.error_feedback_top_k(g, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="k = 0"):
        sparsify.error_feedback_top_k(g, None, 0)
    with pytest.raises(ValueError, match="out_error"):
        sparsify.error_feedback_top_k(g, None, 2, out_error=torch.zeros(3, 6))
    with pytest.raises(ValueError, match="separate buffer"):
        sparsify.error_feedback_top_k(g, g.clone(), 2, out_error=g)


@pytest.mark.parametrize("per_device", [False, True])
def test_softmax_closed_form_gradient_equals_autograd(per_device):
    """dL/dW = ((softmax(z) - onehot) / B)^T X, dL/db = sum_b (softmax - onehot) / B: equal to autograd under vmap."""
    model = FlatModel.create("softmax", (1, 28, 28))
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 9, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (6, 9), generator=gen)
    theta = torch.randn(6 if per_device else 1, model.dim, generator=gen) * 0.05
    theta = theta if per_device else theta[0]
    out = torch.empty(6, model.dim)
    g, loss = model.grads(theta, x, y, out=out)
    assert g is out
    g_ref, loss_ref = vmap(grad_and_value(model._loss), in_dims=(0 if per_device else None, 0, 0))(theta, x, y)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=1e-7)


def test_report_screens_non_finite_rows_in_one_pass():
    """Norm inf or NaN flags a row; a finite row whose norm overflows float32 stays finite (norm reported inf)."""
    v = torch.ones(4, 6)
    v[1, 2] = math.nan
    v[2, 0] = -math.inf
    v[3] = 3e38                                       # finite entries, ||v||^2 overflows float32
    rep = report(LocalUpdate(torch.arange(4), v, torch.zeros(4)))
    assert rep.finite.tolist() == [True, False, False, True]
    assert float(rep.norm[0]) == pytest.approx(math.sqrt(6))
    assert math.isinf(float(rep.norm[1])) and math.isinf(float(rep.norm[2]))


def test_fleet_with_reused_buffers_sends_what_per_device_projection_sends():
    """Three rounds of the fused device path with buffers reused (FeelExperiment's setting), power_norm "sparse":
    the error accumulators follow Delta' = g + Delta - sp_k(g + Delta) exactly, and the one-projection received
    signal equals the sum of per-device projected rows x_m = sqrt(alpha_m) [A g_sp_m ; 1] (same noise) to float32
    rounding, with alpha_m = P / (||g_sp_m||^2 + 1)."""
    m, b, d_in = 30, 4, (1, 6, 6)
    model = FlatModel.create("softmax", d_in)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(m, b, *d_in, generator=gen)
    y = torch.randint(0, 10, (m, b), generator=gen)
    s, k, power = 101, 40, 500.0
    scheme = AnalogScheme(model.dim, s, power, k=k, seed=3, power_norm="sparse")
    fleet = DeviceFleet(torch.arange(m), x, y, model.dim, reuse_buffers=True)
    ch = SymbolChannel(m, 0.5, seed=1)
    theta = torch.zeros(model.dim)
    buf = torch.empty(m, model.dim)
    buffers = set()
    for t in range(3):
        theta = theta + 0.01 * torch.randn(model.dim, generator=gen)
        upd = fleet.local_update(model, GlobalModel(t, theta), out=buf)
        before = fleet.error.clone()
        csi = ch.csi(t)
        tx, sending = fleet.encode(scheme, upd, Schedule(t, upd.ids, torch.ones(m, dtype=torch.bool)), csi)
        sp, ref_err = _reference(upd.vector, before, k)
        assert torch.equal(tx.represented, sp)
        alpha = power / ((sp.double() ** 2).sum(1) + 1)
        rows = torch.cat([sp.double() @ scheme.projection.double().T, torch.ones(m, 1, dtype=torch.float64)], 1)
        rows = rows * alpha.sqrt()[:, None]
        y_one = ch.transmit_linear(tx.linear, RoundCsi(t, csi.gain, csi.active)).y
        y_rows = ch.transmit(rows.float(), RoundCsi(t, csi.gain, csi.active)).y
        eps = torch.finfo(torch.float32).eps
        assert float((y_one - y_rows).abs().max()) <= 50 * eps * float(y_rows.abs().max())
        buffers.add(tx.linear.payload.data_ptr())
        fleet.commit(sending)
        assert torch.equal(fleet.error, ref_err)
    assert len(buffers) == 1                          # the payload buffer was reused, not reallocated
