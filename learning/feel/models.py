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

    def grads(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-device gradients of the mean cross-entropy on each device's batch, all devices in one vmap.

        theta: float32[d] (shared) or float32[M, d] (per device); x: float32[M, B, C, H, W]; y: int64[M, B].
        Returns (grads float32[M, d], losses float32[M]).
        """
        in_theta = 0 if theta.dim() == 2 else None
        g, loss = vmap(grad_and_value(self._loss), in_dims=(in_theta, 0, 0))(theta, x, y)
        return g, loss

    @torch.no_grad()
    def evaluate(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batch: int = 5000) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of theta on x float32[N, C, H, W], y int64[N]."""
        correct, total_loss = 0, 0.0
        for i in range(0, x.shape[0], batch):
            out = self.logits(theta, x[i:i + batch])
            correct += int((out.argmax(1) == y[i:i + batch]).sum())
            total_loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
        return correct / x.shape[0], total_loss / x.shape[0]
