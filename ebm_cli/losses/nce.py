"""loss=nce: noise-contrastive estimation, telling the data from samples of a known noise."""

import math
from typing import Tuple

import torch

from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.loss import Loss, Stats
from ebm_cli.core.spaces import is_continuous
from ebm_cli.errors import UserError, require_choice, require_positive


class NCE(Loss):
    """Noise-contrastive estimation (Gutmann and Hyvärinen, 2010): logistic regression of data
    against `noise_samples` (= nu) noise samples per data point, with the log-odds

        G(x, y) = -beta F(x, y) - log(nu q(y)),
        loss = mean [ softplus(-G(x, y)) + sum_k softplus(G(x, y~_k)) ],   y~_k ~ q.

    exp(-beta F) is taken as normalised itself: at the optimum -beta F(x, y) = log P(y | x), so the
    energy learns its own log Z(x) (through its dependence on x) instead of needing it computed.

    Args:
        noise: uniform (over the y box) | gaussian (a Gaussian fitted to the training y, each
            coordinate's mean and `scale` times its std).
        noise_samples: nu, noise samples per data point.
        scale: the Gaussian noise's std relative to the data's.
        data: the dataset (the Gaussian's fit).
        y_space: the data's y box.
    """

    name = "nce"

    def __init__(self, noise: str = "uniform", noise_samples: int = 16, scale: float = 1.0, *, data, y_space):
        require_choice("noise", noise, ("uniform", "gaussian"))
        require_positive(noise_samples=noise_samples, scale=scale)
        if not is_continuous(y_space):
            raise UserError("loss=nce draws its noise over a continuous y box; token sequences train with loss=nll")
        self.noise, self.nu, self.space = noise, noise_samples, y_space
        y = data.y_train.flatten(1).float()
        self.mean = y.mean(0)
        self.std = (y.std(0) * scale).clamp(min=1e-3 * (y_space.high - y_space.low)) if len(y) > 1 else \
            torch.full_like(self.mean, scale * (y_space.high - y_space.low) / 4)

    def sample(self, b: int, device) -> torch.Tensor:
        """(B, nu, *y_shape) noise samples."""
        if self.noise == "uniform":
            return self.space.sample(b, self.nu, device=device)
        z = torch.randn(b, self.nu, self.mean.numel(), device=device)
        return (self.mean.to(device) + z * self.std.to(device)).view(b, self.nu, *self.space.shape)

    def log_q(self, y: torch.Tensor) -> torch.Tensor:
        """log q(y) for y: (..., *y_shape) -> (...)."""
        lead = y.shape[:y.dim() - len(self.space.shape)]
        if self.noise == "uniform":
            return torch.full(lead, -self.space.size * math.log(self.space.high - self.space.low), device=y.device)
        z = (y.reshape(*lead, -1) - self.mean.to(y.device)) / self.std.to(y.device)
        log_norm = torch.log(self.std.to(y.device)).sum() + 0.5 * self.mean.numel() * math.log(2 * math.pi)
        return -0.5 * z.pow(2).sum(-1) - log_norm

    def __call__(self, energy, x, y, beta: float) -> Tuple[torch.Tensor, Stats]:
        noise = self.sample(x.shape[0], x.device)
        e_pos = energy(x, y)  # (B,)
        e_neg = pairwise_energy(energy, x, noise)  # (B, nu)
        log_nu = math.log(self.nu)
        g_pos = -beta * e_pos - self.log_q(y) - log_nu
        g_neg = -beta * e_neg - self.log_q(noise) - log_nu
        loss = torch.nn.functional.softplus(-g_pos) + torch.nn.functional.softplus(g_neg).sum(1)
        with torch.no_grad():  # how often the classifier is right on the data and on the noise
            accuracy = ((g_pos > 0).float().mean() + (g_neg < 0).float().mean()) / 2
        return loss.mean(), {"e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean(), "nce_accuracy": accuracy}
