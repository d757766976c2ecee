"""Gradient inference: descend F(x, y) in y from many starts, keep the k lowest distinct minima."""

from typing import Optional

import torch

from ebm_cli.core.energy import pairwise_energy, y_gradient
from ebm_cli.core.inference import Candidates, Inference, attach_latent, select_distinct
from ebm_cli.errors import require_choice, require_non_negative, require_positive
from ebm_cli.schedules import cosine


class GradientInference(Inference):
    """Adam or SGD on y, projected into the y-box, cosine step-size decay, a fixed number of steps
    (a convergence test would read a value back to the host inside the loop, which stalls a GPU).

    Args:
        k: candidates per x.
        starts: starting points, spread evenly over the y-box (1-D y) or drawn uniformly.
        steps: optimiser steps.
        lr: the initial step size, decayed by a cosine to ...
        lr_min: ... this at the last step.
        optimizer: adam | sgd.
        dedup: minima closer than this are one candidate.
        y_space: the data's y box.
        seed: seeds the random starts (the run's seed).
    """

    name = "gradient"

    def __init__(self, k: int = 3, starts: int = 32, steps: int = 150, lr: float = 0.03, lr_min: float = 0.001,
                 optimizer: str = "adam", dedup: float = 0.02, y_space=None, seed: int = 0):
        super().__init__(k, y_space)
        require_positive(starts=starts, steps=steps, lr=lr)
        require_non_negative(lr_min=lr_min, dedup=dedup)
        require_choice("optimizer", optimizer, ("adam", "sgd"))
        self.starts, self.steps = starts, steps
        self.lr, self.lr_min, self.optimizer, self.dedup = lr, lr_min, optimizer, dedup
        self.seed = seed

    def check(self, energy) -> None:
        self.require_box()

    def initial(self, batch: int, device) -> torch.Tensor:
        """Starts spread over the box: an even grid for 1-D y, seeded uniform draws otherwise."""
        space = self.y_space
        if space.size == 1:
            y0 = torch.linspace(space.low, space.high, self.starts + 2, device=device)[1:-1]
            y0 = y0.view(1, self.starts, 1).expand(batch, -1, -1)
        else:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            y0 = space.sample(batch, self.starts, generator=gen, device=device)
        return y0.reshape(batch, self.starts, *space.shape).clone()

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k = k or self.k
        y = self.initial(x.shape[0], x.device).requires_grad_(True)
        grad_of = y_gradient(energy, x)  # the energy's closed form where it has one, else autograd
        opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[self.optimizer]
        opt = opt_cls([y], lr=self.lr)
        for step in range(self.steps):
            for group in opt.param_groups:
                group["lr"] = cosine(self.lr, self.lr_min, step, self.steps)
            y.grad = grad_of(y.detach())
            opt.step()
            with torch.no_grad():
                y.copy_(self.y_space.project(y))
        y = y.detach()
        with torch.no_grad():
            e = pairwise_energy(energy, x, y)
        cands = select_distinct(y, e, k, self.dedup)
        cands.evaluations = x.shape[0] * self.starts * (self.steps + 1)
        return attach_latent(energy, x, cands)
