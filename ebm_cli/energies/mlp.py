"""MLP energy F(x, y) and the explicit regressor baseline E(x, y) = ||y - f(x)||^2."""

import torch

from ebm_cli.energies.base import BoxSpace, Energy, Normalizer, log_gaussian_box_mass, mlp


class MLPEnergy(Energy):
    """F(x, y) = MLP([x, y]) for flat x (B, Dx) and y (B, Dy); returns (B,)."""

    def __init__(self, x_dim: int, x_low: float, x_high: float, y_space: BoxSpace, hidden: int, depth: int, activation: str):
        super().__init__()
        self.y_space = y_space
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim + y_space.size, hidden, depth, 1, activation)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.x_norm(x.flatten(1)), self.y_norm(y.flatten(1))], dim=1)
        return self.net(h)[:, 0]


class PredictorEnergy(Energy):
    """E(x, y) = ||y - f(x)||^2 for a feed-forward f (subclasses define `predict`): one output per
    x, whatever the data.

    Trained by the Gibbs NLL this is MSE regression (log Z does not depend on f, but for the
    share of the Gaussian cut off by the y-box), so it predicts the mean of the valid y: the
    baseline the lecture argues against.
    """

    def predict(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """f(x): (B, *y_shape), in y units."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y - self.predict(x)).flatten(1).pow(2).sum(1)

    exact_partition = True

    def log_partition(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """log ∫_box exp(-beta ||y - f(x)||^2) dy, exactly: a product of erf differences, (B,).

        It lets the Gibbs NLL skip the y-grid for this energy (the quadrature would give the
        same value, at the cost of G energy evaluations per sample).
        """
        return log_gaussian_box_mass(self.predict(x).flatten(1), beta, self.y_space.low, self.y_space.high)


class RegressorEnergy(PredictorEnergy):
    """The explicit regressor baseline with an MLP f(x), for flat x (B, Dx)."""

    def __init__(self, x_dim: int, x_low: float, x_high: float, y_space: BoxSpace, hidden: int, depth: int, activation: str):
        super().__init__()
        self.y_space = y_space
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim, hidden, depth, y_space.size, activation)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.x_norm(x.flatten(1))) * self.y_norm.half_width + self.y_norm.center
        return out.view(x.shape[0], *self.y_space.shape)
