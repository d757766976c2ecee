"""Derivative-free inference: iterative resampling with shrinking noise (implicit behavioural cloning)."""

from typing import Optional

import torch

from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.inference import Candidates, Inference, attach_latent, select_distinct
from ebm_cli.errors import require, require_non_negative, require_positive


class DFOInference(Inference):
    """The derivative-free optimiser of implicit behavioural cloning (Florence et al., 2021), run
    from `starts` independent populations so that several minima can be found: each population
    draws `samples` y in its own region of the box, then `iters` times resamples them in
    proportion to softmax(-F / temperature), adds Gaussian noise of scale sigma and shrinks sigma
    by `shrink`. Each population's lowest point is a candidate. Only energy values are used.

    Args:
        k: candidates per x.
        starts: independent populations, each on its share of the y-box.
        samples: draws per population.
        iters: resampling rounds.
        sigma: the initial noise, as a share of the y-box width.
        shrink: noise factor per round, in (0, 1].
        temperature: of the softmax over -F.
        dedup: points closer than this are one candidate.
        y_space: the data's y box (flat).
        seed: seeds the draws (the run's seed).
    """

    name = "dfo"

    def __init__(self, k: int = 3, starts: int = 16, samples: int = 64, iters: int = 8, sigma: float = 0.1,
                 shrink: float = 0.5, temperature: float = 1.0, dedup: float = 0.02, y_space=None, seed: int = 0):
        super().__init__(k, y_space)
        require_positive(starts=starts, samples=samples, iters=iters, sigma=sigma, temperature=temperature)
        require(0 < shrink <= 1, "shrink", shrink, "must be in (0, 1]")
        require_non_negative(dedup=dedup)
        self.starts, self.samples, self.iters, self.sigma, self.shrink = starts, samples, iters, sigma, shrink
        self.temperature, self.dedup, self.seed = temperature, dedup, seed

    def check(self, energy) -> None:
        self.require_box(flat=True)

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k, b, space = k or self.k, x.shape[0], self.y_space
        p, n, d = self.starts, self.samples, space.size
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        sigma = self.sigma * (space.high - space.low)
        x_pop = x.unsqueeze(1).expand(b, p, *x.shape[1:]).reshape(b * p, *x.shape[1:])
        with torch.no_grad():
            y = _starts(space, b, p, n, sigma, gen, x.device)  # (B*P, N, D)
            for _ in range(self.iters):
                e = pairwise_energy(energy, x_pop, y.view(b * p, n, *space.shape))
                idx = torch.multinomial(torch.softmax(-e / self.temperature, dim=1), n, replacement=True, generator=gen)
                y = y.gather(1, idx.unsqueeze(-1).expand(b * p, n, d))
                y = space.project(y + sigma * torch.randn(y.shape, generator=gen, device=x.device))
                sigma *= self.shrink
            e = pairwise_energy(energy, x_pop, y.view(b * p, n, *space.shape))
            best = e.argmin(dim=1)
            y = y[torch.arange(b * p, device=x.device), best].view(b, p, *space.shape)
            e = e.min(dim=1).values.view(b, p)
        cands = select_distinct(y, e, k, self.dedup)
        cands.evaluations = b * p * n * (self.iters + 1)
        return attach_latent(energy, x, cands)


def _starts(space, batch: int, pops: int, n: int, sigma: float, generator, device) -> torch.Tensor:
    """(B*P, N, D) initial draws, one region per population so that they can find different
    minima: for 1-D y the p-th of P equal intervals of the box; otherwise a Gaussian of scale
    sigma around a uniform random centre."""
    if space.size == 1:
        u = torch.rand(batch, pops, n, 1, generator=generator, device=device)
        u = (torch.arange(pops, device=device).view(1, pops, 1, 1) + u) / pops
        return (space.low + (space.high - space.low) * u).view(batch * pops, n, 1)
    centre = space.sample(batch, pops, 1, generator=generator, device=device)
    y = centre + sigma * torch.randn(batch, pops, n, space.size, generator=generator, device=device)
    return space.project(y).view(batch * pops, n, space.size)
