"""Models for federated edge learning, handled as one flat float32 parameter vector theta in R^d.

The over-the-air schemes work on vectors, so every model here is wrapped by :class:`FlatModel`, which maps
theta: float32[d] <-> the module's named parameters and evaluates losses and gradients *vectorized over devices* with
``torch.func.vmap`` (one batched computation for all M devices, no Python loop per device).

Registry (:data:`MODELS`):

* ``softmax``: the single-layer network of Amiri & Gündüz (TSP 2020, Sec. VI): logits = W x + b with
  W in R^{10x784}, b in R^10, d = 7,850 for 28x28 inputs.
* ``cnn``: a small CNN for CIFAR-10 (two 5x5 conv layers, two fully connected), d = 62,006 for 3x32x32 inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap


class SoftmaxRegression(nn.Module):
    """Single-layer network: input float32[N, C, H, W] -> logits float32[N, classes]."""

    def __init__(self, in_shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(math.prod(in_shape), n_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(-3))


class SmallCnn(nn.Module):
    """LeNet-style CNN: float32[N, C, 32, 32] -> logits float32[N, classes]."""

    def __init__(self, in_shape: tuple[int, int, int] = (3, 32, 32), n_classes: int = 10):
        super().__init__()
        c, h, w = in_shape
        self.conv1 = nn.Conv2d(c, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * (((h - 4) // 2 - 4) // 2) * (((w - 4) // 2 - 4) // 2), 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(-3)))
        return self.fc3(F.relu(self.fc2(x)))


MODELS = {"softmax": SoftmaxRegression, "cnn": SmallCnn}


class FlatModel:
    """A module seen as a function of one flat parameter vector.

    ``theta``: float32[d]; per-device parameters float32[M, d]. Inputs are float32[M, B, C, H, W] and labels
    int64[M, B] (M devices with B samples each).
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.sizes = [p.numel() for _, p in module.named_parameters()]
        self.dim = sum(self.sizes)

    @classmethod
    def create(cls, name: str, in_shape: tuple[int, int, int], n_classes: int = 10, seed: int = 0) -> "FlatModel":
        if name not in MODELS:
            raise ValueError(f"model {name!r}: unknown; expected one of {', '.join(MODELS)}")
        torch.manual_seed(seed)
        return cls(MODELS[name](in_shape, n_classes))

    def initial(self) -> torch.Tensor:
        """The module's initial parameters as float32[d]."""
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()]).float().clone()

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.reshape(s) for n, t, s in zip(self.names, torch.split(theta, self.sizes), self.shapes)}

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """theta float32[d], x float32[N, C, H, W] -> logits float32[N, classes]."""
        return functional_call(self.module, self.unflatten(theta), (x,))

    def _loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(theta, x), y)

    def grads(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
              out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-device gradients of the mean cross-entropy on each device's batch, all devices in one computation.

        theta: float32[d] (shared) or float32[M, d] (per device); x: float32[M, B, C, H, W]; y: int64[M, B];
        out: optional float32[M, d] buffer the gradients are written to (saves an [M, d] allocation per round).
        Returns (grads float32[M, d], losses float32[M]).

        The single-layer softmax model uses its closed form (:meth:`_softmax_grads`: two matrix products for all
        devices); every other model autograd under ``torch.func.vmap``.
        """
        if isinstance(self.module, SoftmaxRegression):
            return self._softmax_grads(theta, x, y, out)
        in_theta = 0 if theta.dim() == 2 else None
        g, loss = vmap(grad_and_value(self._loss), in_dims=(in_theta, 0, 0))(theta, x, y)
        if out is not None:
            out.copy_(g)
            g = out
        return g, loss

    def _softmax_grads(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                       out: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed-form gradient of the mean cross-entropy of logits z = W x + b over a device's B samples:
        r = (softmax(z) - onehot(y)) / B, dL/dW = r^T X (one batched product for all devices), dL/db = sum_b r."""
        m, b = y.shape
        n_in = x[0, 0].numel()
        n_cls = self.module.linear.out_features
        xf = x.reshape(m, b, n_in).to(torch.float32)
        w_size = n_cls * n_in
        if theta.dim() == 1:
            w, bias = theta[:w_size].view(n_cls, n_in), theta[w_size:]
            z = (xf.reshape(m * b, n_in) @ w.T).reshape(m, b, n_cls) + bias
        else:
            w, bias = theta[:, :w_size].reshape(m, n_cls, n_in), theta[:, w_size:]
            z = torch.bmm(xf, w.transpose(1, 2)) + bias[:, None, :]
        logp = torch.log_softmax(z, dim=-1)
        loss = -logp.gather(-1, y[..., None]).squeeze(-1).mean(1)
        r = logp.exp_()
        r.scatter_add_(-1, y[..., None], torch.full((m, b, 1), -1.0))
        r.div_(b)
        g = out if out is not None else torch.empty(m, self.dim)
        torch.bmm(r.transpose(1, 2), xf, out=g[:, :w_size].view(m, n_cls, n_in))
        torch.sum(r, dim=1, out=g[:, w_size:])
        return g, loss.detach()

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batch: int = 5000) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of theta on x float32[N, C, H, W], y int64[N]."""
        correct, total_loss = 0, 0.0
        for i in range(0, x.shape[0], batch):
            out = self.logits(theta, x[i:i + batch])
            correct += int((out.argmax(1) == y[i:i + batch]).sum())
            total_loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
        return correct / x.shape[0], total_loss / x.shape[0]
