"""Derivative-free inference: iterative resampling with shrinking noise, and the cross-entropy method."""

import torch

from ebm_cli.errors import UserError
from ebm_cli.inference.common import Candidates, attach_latent, pairwise_energy, select_distinct


SMOOTHING = 0.7  # CEM: weight of the new elites' mean and spread against the previous ones
FLOOR = 0.01  # CEM: the spread never falls below sigma * FLOOR ** (iteration / iters)


class DFOInference:
    """The derivative-free optimiser of implicit behavioural cloning (Florence et al., 2021), run
    from `starts` independent populations so that several minima can be found: each population
    draws `samples` y in its own region of the box, then `iters` times resamples them in
    proportion to softmax(-F / temperature), adds Gaussian noise of scale sigma and shrinks sigma
    by `shrink`. Each population's lowest point is a candidate. Only energy values are used."""

    def __init__(self, k: int, starts: int, samples: int, iters: int, sigma: float, shrink: float, temperature: float,
                 dedup: float, seed: int = 0):
        self.k, self.starts, self.samples, self.iters, self.sigma, self.shrink = k, starts, samples, iters, sigma, shrink
        self.temperature, self.dedup, self.seed = temperature, dedup, seed

    def check(self, energy) -> None:
        if not hasattr(energy, "y_space") or len(energy.y_space.shape) != 1:
            raise UserError("inference=dfo needs a continuous, flat y in a box (not frames: use inference=z_sweep)")

    def __call__(self, energy, x: torch.Tensor, k: int = None) -> Candidates:
        k, b, space = k or self.k, x.shape[0], energy.y_space
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


class CEMInference:
    """The cross-entropy method, from `starts` populations spread over the box so that several
    minima can be found: each population draws `samples` y from its Gaussian, keeps the
    `elite` share with the lowest energy and refits mean and standard deviation to them."""

    def __init__(self, k: int, starts: int, samples: int, iters: int, elite: float, sigma: float,
                 dedup: float, seed: int = 0):
        self.k, self.starts, self.samples, self.iters, self.elite = k, starts, samples, iters, elite
        self.sigma, self.dedup, self.seed = sigma, dedup, seed

    def check(self, energy) -> None:
        if not hasattr(energy, "y_space") or len(energy.y_space.shape) != 1:
            raise UserError("inference=cem needs a continuous, flat y in a box (not frames: use inference=z_sweep)")

    def __call__(self, energy, x: torch.Tensor, k: int = None) -> Candidates:
        k, b, space = k or self.k, x.shape[0], energy.y_space
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
