"""Langevin dynamics on y: samples of P_beta(y | x) ∝ exp(-beta F(x, y)), annealed towards minima."""

import math
from typing import Callable, Optional

import torch

from ebm_cli.errors import UserError
from ebm_cli.inference.common import Candidates, attach_latent, pairwise_energy, select_distinct
from ebm_cli.schedules import build_schedule


def langevin_chains(energy, x: torch.Tensor, y: torch.Tensor, steps: int, step_size: float,
                    beta: Callable[[int], float], grad_clip: Optional[float] = None, noise: bool = True,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Run Langevin chains from y: (B, C, *y_shape) for x: (B, *x_shape); returns the last states.

    y <- project(y - eta * g + sqrt(2 eta / beta(t)) * xi), g = grad_y F(x, y) clipped to norm
    grad_clip per chain, xi ~ N(0, 1). For a small step eta the chain samples exp(-beta F); with
    noise=False it is plain projected gradient descent. Nothing is read back to the host inside
    the loop, so the steps queue up on the device.
    """
    space = energy.y_space
    y = y.detach().clone()
    for t in range(steps):
        y.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(pairwise_energy(energy, x, y).sum(), y)
        with torch.no_grad():
            if grad_clip is not None:
                norm = grad.flatten(2).norm(dim=2).clamp(min=1e-12)
                grad = grad * (grad_clip / norm).clamp(max=1.0).view(*norm.shape, *([1] * (grad.dim() - 2)))
            y = y - step_size * grad
            if noise:
                xi = torch.randn(y.shape, generator=generator, device=y.device)
                y = y + math.sqrt(2 * step_size / beta(t)) * xi
            y = space.project(y)
    return y.detach()


class LangevinInference:
    """Langevin chains from uniform starts at inverse temperature beta(t) (an annealing schedule);
    the k lowest distinct final states are the candidates, and `sample` returns all of them."""

    def __init__(self, k: int, chains: int, steps: int, step_size: float, beta_cfg, grad_clip: Optional[float],
                 dedup: float, seed: int = 0):
        self.k, self.chains, self.steps, self.step_size = k, chains, steps, step_size
        self.beta, self.grad_clip, self.dedup, self.seed = build_schedule(beta_cfg), grad_clip, dedup, seed

    def check(self, energy) -> None:
        if not hasattr(energy, "y_space"):
            raise UserError("inference=langevin needs a continuous, differentiable y")

    def sample(self, energy, x: torch.Tensor, y0: Optional[torch.Tensor] = None, noise: bool = True,
               generator=None) -> torch.Tensor:
        """Final chain states (B, C, *y_shape), from y0 or from uniform starts."""
        if y0 is None:
            y0 = energy.y_space.sample(x.shape[0], self.chains, generator=generator, device=x.device)
        return langevin_chains(energy, x, y0, self.steps, self.step_size, self.beta, self.grad_clip, noise, generator)

    def __call__(self, energy, x: torch.Tensor, k: int = None) -> Candidates:
        k = k or self.k
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        y = self.sample(energy, x, generator=gen)
        with torch.no_grad():
            e = pairwise_energy(energy, x, y)
        cands = select_distinct(y, e, k, self.dedup)
        cands.evaluations = x.shape[0] * self.chains * (self.steps + 1)
        return attach_latent(energy, x, cands)
