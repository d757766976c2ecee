"""MLP energy F(x, y) and the explicit regressor baseline E(x, y) = ||y - f(x)||^2, on flat x and y."""

import torch

from ebm_cli.core.energy import Energy, PredictorEnergy
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.energies.nets import Normalizer, check_sizes, mlp


class MLPEnergy(Energy):
    """F(x, y) = MLP([x, y]) for x (B, *x_shape) and y (B, *y_shape), both flattened; returns (B,).

    Args:
        hidden: units per hidden layer.
        depth: hidden layers.
        activation: relu | silu | gelu | tanh | softplus | elu.
        x_dim, x_low, x_high: the size of x and the range its values span (from the data).
        y_space: the y box (from the data).
    """

    def __init__(self, hidden: int = 64, depth: int = 2, activation: str = "silu", *, x_dim: int, x_low: float,
                 x_high: float, y_space: BoxSpace):
        super().__init__()
        check_sizes(hidden, depth, activation)
        self.y_space = y_space
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim + y_space.size, hidden, depth, 1, activation)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.x_norm(x.flatten(1)), self.y_norm(y.flatten(1))], dim=1)  # (B, Dx + Dy)
        return self.net(h)[:, 0]


class RegressorEnergy(PredictorEnergy):
    """The explicit regressor baseline: f(x) = MLP(x), E = ||y - f(x)||^2.

    Args:
        hidden, depth, activation: the MLP, as for energy=mlp.
        x_dim, x_low, x_high: the size of x and the range its values span (from the data).
        y_space: the y box (from the data).
    """

    def __init__(self, hidden: int = 64, depth: int = 2, activation: str = "silu", *, x_dim: int, x_low: float,
                 x_high: float, y_space: BoxSpace):
        super().__init__(y_space)
        check_sizes(hidden, depth, activation)
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim, hidden, depth, y_space.size, activation)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.x_norm(x.flatten(1))) * self.y_norm.half_width + self.y_norm.center
        return out.view(x.shape[0], *self.y_space.shape)
