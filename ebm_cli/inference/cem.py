"""The cross-entropy method, from several populations spread over the y-box."""

from typing import Optional

import torch

from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.inference import Candidates, Inference, attach_latent, select_distinct
from ebm_cli.errors import require, require_non_negative, require_positive

SMOOTHING = 0.7  # weight of the new elites' mean and spread against the previous ones
FLOOR = 0.01  # the spread never falls below sigma * FLOOR ** (iteration / iters)


class CEMInference(Inference):
    """The cross-entropy method from `starts` populations spread over the box, so that several
    minima can be found: each population draws `samples` y from its Gaussian, keeps the `elite`
    share with the lowest energy and refits mean and standard deviation to them.

    Args:
        k: candidates per x.
        starts: populations, their means spread over the y-box.
        samples: draws per population and iteration.
        iters: refits.
        elite: share of the draws kept, in (0, 1].
        sigma: the initial standard deviation, as a share of the y-box width.
        dedup: means closer than this are one candidate.
        y_space: the data's y box (flat).
        seed: seeds the draws (the run's seed).
    """

    name = "cem"

    def __init__(self, k: int = 3, starts: int = 16, samples: int = 64, iters: int = 20, elite: float = 0.1,
                 sigma: float = 0.1, dedup: float = 0.02, y_space=None, seed: int = 0):
        super().__init__(k, y_space)
        require_positive(starts=starts, samples=samples, iters=iters, sigma=sigma)
        require(0 < elite <= 1, "elite", elite, "must be in (0, 1]")
        require_non_negative(dedup=dedup)
        self.starts, self.samples, self.iters, self.elite = starts, samples, iters, elite
        self.sigma, self.dedup, self.seed = sigma, dedup, seed

    def check(self, energy) -> None:
        self.require_box(flat=True)

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k, b, space = k or self.k, x.shape[0], self.y_space
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        d, p, n = space.size, self.starts, self.samples
        n_elite = max(1, int(round(self.elite * n)))
        if d == 1:  # even spread of the population means, as gradient inference does
            mean = torch.linspace(space.low, space.high, p + 2, device=x.device)[1:-1].view(1, p, 1).expand(b, p, 1)
        else:
            mean = space.sample(b, p, generator=gen, device=x.device).reshape(b, p, d)
        sigma0 = self.sigma * (space.high - space.low)
        std = torch.full_like(mean, sigma0)
        x_pop = x.unsqueeze(1).expand(b, p, *x.shape[1:]).reshape(b * p, *x.shape[1:])
        with torch.no_grad():
            for it in range(self.iters):
                y = mean.unsqueeze(2) + std.unsqueeze(2) * torch.randn(b, p, n, d, generator=gen, device=x.device)
                y = space.project(y)
                e = pairwise_energy(energy, x_pop, y.reshape(b * p, n, *space.shape)).view(b, p, n)
                top = e.topk(n_elite, dim=2, largest=False).indices
                elites = y.gather(2, top.unsqueeze(-1).expand(b, p, n_elite, d))
                # Smoothed updates: a population whose elites happen to agree on one coordinate
                # would otherwise shrink its spread there to nothing before it reaches the minimum.
                mean = SMOOTHING * elites.mean(dim=2) + (1 - SMOOTHING) * mean
                std = SMOOTHING * elites.std(dim=2, unbiased=False) + (1 - SMOOTHING) * std
                # ... and a floor that decays geometrically to 1% of the initial spread
                std = std.clamp(min=sigma0 * FLOOR ** ((it + 1) / self.iters))
            y = mean.reshape(b, p, *space.shape)
            e = pairwise_energy(energy, x, y)
        cands = select_distinct(y, e, k, self.dedup)
        cands.evaluations = b * p * (n * self.iters + 1)
        return attach_latent(energy, x, cands)
