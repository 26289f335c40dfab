"""Server side of a FEEL round: broadcast, screening of bad updates, decoding and the optimizer step.

The parameter server holds theta_t float32[d] and an optimizer (ADAM as in Amiri & Gündüz TSP 2020 Sec. VI, or SGD)
that applies the decoded aggregate as the gradient: theta_{t+1} = theta_t - eta * Adam(g_hat_t).

Screening (bad input from the air is counted and dropped, never used): a device whose reported update is not finite,
or whose norm exceeds ``explode_factor`` times the median norm of the finite updates (robust to a minority of bad
devices), or exceeds ``max_norm``, is told not to transmit; the reason is reported in the round record.
"""

from __future__ import annotations

import math

import torch

from learning.feel.channel import Reception
from learning.feel.messages import Aggregate, GlobalModel, Schedule, Transmission, UpdateReport
from learning.feel.schemes import Scheme

OPTIMIZERS = ("adam", "sgd")


class ParameterServer:
    """theta0: float32[d] initial model; optimizer "adam" or "sgd" with learning rate ``lr``."""

    def __init__(self, theta0: torch.Tensor, optimizer: str = "adam", lr: float = 1e-3, explode_factor: float = 10.0,
                 max_norm: float = math.inf):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {optimizer!r}: unknown; expected one of {', '.join(OPTIMIZERS)}")
        if not lr > 0:
            raise ValueError(f"lr = {lr}: expected > 0")
        if not explode_factor > 1:
            raise ValueError(f"explode_factor = {explode_factor}: expected > 1 (times the median update norm)")
        self.theta = torch.nn.Parameter(theta0.detach().clone().float())
        self.opt = (torch.optim.Adam([self.theta], lr=lr) if optimizer == "adam"
                    else torch.optim.SGD([self.theta], lr=lr))
        self.explode_factor, self.max_norm = float(explode_factor), float(max_norm)
        self.round = 0

    def broadcast(self) -> GlobalModel:
        return GlobalModel(self.round, self.theta.detach().clone())

    def screen(self, rep: UpdateReport) -> Schedule:
        """Schedule every device whose update looks sane; excluded ones get a reason naming the value."""
        finite = rep.finite.clone()
        ok = finite.clone()
        median = float(rep.norm[finite].median()) if bool(finite.any()) else math.nan
        limit = min(self.max_norm, self.explode_factor * median) if finite.sum() >= 3 else self.max_norm
        too_big = finite & (rep.norm > limit)
        ok &= ~too_big
        excluded = {}
        for i in torch.nonzero(~ok).flatten().tolist():  # only the (few) excluded devices
            dev = int(rep.ids[i])
            excluded[dev] = ("non-finite update (NaN/Inf)" if not bool(finite[i]) else
                             f"exploding update: norm {float(rep.norm[i]):.3g} > limit {limit:.3g} "
                             f"({self.explode_factor:g} x median {median:.3g})")
        return Schedule(self.round, rep.ids, ok, excluded)

    def decode(self, scheme: Scheme, received: Transmission | Reception, n_received: int) -> Aggregate:
        agg = scheme.decode(received, n_received)
        if agg.ok and not bool(torch.isfinite(agg.vector).all()):
            return Aggregate(torch.zeros_like(agg.vector), ok=False, info={**agg.info, "reason": "non-finite estimate"})
        return agg

    def apply(self, agg: Aggregate) -> bool:
        """One optimizer step with the aggregate as gradient (skipped if unusable); advances the round."""
        applied = bool(agg.ok)
        if applied:
            self.opt.zero_grad(set_to_none=False)
            self.theta.grad = agg.vector.detach().clone().float()
            self.opt.step()
        self.round += 1
        return applied

    def state_dict(self) -> dict:
        return {"theta": self.theta.detach().clone(), "opt": self.opt.state_dict(), "round": self.round}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.opt.load_state_dict(state["opt"])
        self.round = int(state["round"])
