"""Gradient inference: descend F(x, y) in y from many starts, keep the k lowest distinct minima."""

import math

import torch

from ebm_cli.errors import UserError
from ebm_cli.inference.common import Candidates, attach_latent, pairwise_energy, select_distinct


class GradientInference:
    """Adam or SGD on y, projected into the y-box, cosine step-size decay, early stop at `tol`."""

    def __init__(self, k: int, starts: int, steps: int, lr: float, lr_min: float, optimizer: str, tol: float, dedup: float, seed: int = 0):
        self.k, self.starts, self.steps = k, starts, steps
        self.lr, self.lr_min, self.optimizer, self.tol, self.dedup = lr, lr_min, optimizer, tol, dedup
        self.seed = seed

    def check(self, energy) -> None:
        if not hasattr(energy, "y_space"):
            raise UserError("inference=gradient needs a continuous, differentiable y")

    def initial(self, energy, batch: int, device) -> torch.Tensor:
        """Starts spread over the box: an even grid for 1-D y, seeded uniform draws otherwise."""
        space = energy.y_space
        if space.size == 1:
            y0 = torch.linspace(space.low, space.high, self.starts + 2, device=device)[1:-1]
            y0 = y0.view(1, self.starts, 1).expand(batch, -1, -1)
        else:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            y0 = space.sample(batch, self.starts, generator=gen, device=device)
        return y0.reshape(batch, self.starts, *space.shape).clone()

    def __call__(self, energy, x: torch.Tensor, k: int = None) -> Candidates:
        k = k or self.k
        y = self.initial(energy, x.shape[0], x.device).requires_grad_(True)
        opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[self.optimizer]
        opt = opt_cls([y], lr=self.lr)
        steps_run = 0
        for step in range(self.steps):
            lr = self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * step / self.steps))
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(pairwise_energy(energy, x, y).sum(), y)
            y.grad = grad
            before = y.detach().clone()
            opt.step()
            with torch.no_grad():
                y.copy_(energy.y_space.project(y))
            steps_run += 1
            # Checking convergence syncs with the device, so only every 10 steps.
            if step % 10 == 9 and (y.detach() - before).abs().max() < self.tol:
                break
        y = y.detach()
        with torch.no_grad():
            e = pairwise_energy(energy, x, y)
        cands = select_distinct(y, e, k, self.dedup)
        cands.evaluations = x.shape[0] * self.starts * (steps_run + 1)
        return attach_latent(energy, x, cands)
