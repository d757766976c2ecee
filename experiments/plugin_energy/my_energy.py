"""A user's own energy, outside the ebm_cli package: a plain torch.nn.Module.

The runner asks the data for the sizes this constructor names (x_dim, y_dim) and supplies the y
box, inference, losses, metrics and landscapes; forward(x, y) returns one energy per pair.
"""

import math

import torch
from torch import nn


class FourierEnergy(nn.Module):
    """F(x, y) = MLP([cos(W [x, y] + b), sin(W [x, y] + b)]): random Fourier features of the pair
    (Rahimi & Recht), then a small MLP. The frequencies W ~ N(0, scale^2) are fixed buffers.

    Args:
        features: random frequencies.
        scale: their standard deviation (higher = sharper wells).
        hidden: units of the MLP's hidden layer.
        x_dim, y_dim: sizes of the flattened x and y (from the data).
    """

    def __init__(self, features: int = 64, scale: float = 2.0, hidden: int = 64, *, x_dim: int, y_dim: int):
        super().__init__()
        self.register_buffer("w", scale * torch.randn(x_dim + y_dim, features))
        self.register_buffer("b", 2 * math.pi * torch.rand(features))
        self.net = nn.Sequential(nn.Linear(2 * features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, *x_shape), y: (B, *y_shape) -> (B,)."""
        h = torch.cat([x.flatten(1), y.flatten(1)], dim=1) @ self.w + self.b  # (B, features)
        return self.net(torch.cat([h.cos(), h.sin()], dim=1))[:, 0]
