"""What every energy declares: the box its y lives in, and how it scores (x, y) pairs."""

import math
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn


@dataclass(frozen=True)
class BoxSpace:
    """A continuous box [low, high]^shape (the same bounds on every coordinate)."""

    low: float
    high: float
    shape: Tuple[int, ...] = (1,)

    def grid(self, points: int, device=None) -> torch.Tensor:
        """An even grid over the box: (points**D, D) for a flat y of D coordinates."""
        axis = torch.linspace(self.low, self.high, points, device=device)
        dims = int(torch.tensor(self.shape).prod())
        mesh = torch.meshgrid(*([axis] * dims), indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=-1)

    def project(self, y: torch.Tensor) -> torch.Tensor:
        return y.clamp(self.low, self.high)

    def sample(self, *batch: int, generator=None, device=None) -> torch.Tensor:
        """Uniform points in the box: (*batch, *shape)."""
        u = torch.rand(*batch, *self.shape, generator=generator, device=device)
        return self.low + (self.high - self.low) * u

    @property
    def size(self) -> int:
        return int(torch.tensor(self.shape).prod())


class Energy(nn.Module):
    """F(x, y) -> (B,): low for compatible pairs. x: (B, *x_shape), y: (B, *y_space.shape)."""

    y_space: BoxSpace

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def activation(name: str) -> nn.Module:
    table = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU}
    return table[name]()


ACTIVATIONS = ("relu", "silu", "gelu", "tanh", "softplus", "elu")


def mlp(n_in: int, hidden: int, depth: int, n_out: int, act: str) -> nn.Sequential:
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation(act)]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class Normalizer(nn.Module):
    """Maps a box [low, high] to [-1, 1] so that the network sees well-scaled inputs."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.register_buffer("center", torch.tensor((low + high) / 2))
        self.register_buffer("half_width", torch.tensor(max((high - low) / 2, 1e-6)))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.center) / self.half_width


def log_gaussian_box_mass(mean: torch.Tensor, beta: float, low: float, high: float) -> torch.Tensor:
    """log ∫_[low, high]^D exp(-beta ||y - mean||^2) dy for mean: (..., D), exactly -> (...).

    A product of erf differences: the Gaussian's normaliser times the share of it inside the box.
    """
    # float64, and erfc on the far side of the mean: a difference of two erf values near 1
    # would cancel in float32 when the mean lies outside the box and beta is large.
    r, m = math.sqrt(beta), mean.double()
    a, b = r * (low - m), r * (high - m)  # the box in standard units, a < b
    mass = torch.where(a > 0, torch.erfc(a) - torch.erfc(b), torch.where(b < 0, torch.erfc(-b) - torch.erfc(-a),
                                                                         torch.erf(b) - torch.erf(a)))
    log_mass = torch.log(0.5 * mass.clamp(min=1e-300))
    return (0.5 * math.log(math.pi / beta) + log_mass).sum(-1).to(mean.dtype)
