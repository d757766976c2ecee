"""Hamiltonian Monte Carlo on y: exact samples of P_beta(y | x) ∝ exp(-beta F(x, y)) in the y box,
annealed towards minima like Langevin; usable as loss=cd's sampler."""

import math
from typing import Callable, Optional, Tuple

import torch

from ebm_cli.core.energy import pairwise_energy, y_gradient
from ebm_cli.core.inference import Candidates, Inference, attach_latent, select_distinct
from ebm_cli.errors import require_choice, require_non_negative, require_positive
from ebm_cli.schedules import SHAPES, ramp


def reflect(y: torch.Tensor, p: torch.Tensor, low: float, high: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold a position that left the box [low, high] back in, as a ball bouncing off its walls, and
    flip the momentum of each coordinate that bounced an odd number of times. Reflection keeps the
    leapfrog map reversible and volume-preserving, so the Metropolis test stays exact in a box."""
    width = high - low
    k = torch.floor((y - low) / width)  # walls crossed (signed)
    inside = y - low - k * width  # in [0, width)
    odd = torch.remainder(k, 2) == 1
    return torch.where(odd, high - inside, low + inside), torch.where(odd, -p, p)


def hmc_chains(energy, x: torch.Tensor, y: torch.Tensor, space, steps: int, step_size: float, leapfrog: int,
               beta: Callable[[int], float], generator: Optional[torch.Generator] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run HMC chains from y: (B, C, *y_shape) for x: (B, *x_shape); returns the last states and
    the acceptance rate (a 0-d tensor, the mean over chains and transitions).

    Each of `steps` transitions draws a momentum p ~ N(0, I), runs `leapfrog` leapfrog steps of
    size eps on H(y, p) = beta(t) F(x, y) + |p|^2 / 2 (reflecting off the box's walls), and
    accepts the end point with probability min(1, exp(H_start - H_end)) per chain.
    eps = u step_size / sqrt(beta(t)): the spread of exp(-beta F) shrinks as 1 / sqrt(beta), and so
    does the step, which keeps the acceptance rate steady while beta is annealed; u ~ U(0.5, 1.5)
    per chain and transition (Neal's jitter), without which a trajectory that happens to last half
    an oscillation of some direction maps y to its mirror image, over and over, and never mixes.
    Nothing is read back to the host inside the loop.
    """
    grad_of = y_gradient(energy, x)

    @torch.no_grad()
    def energy_of(q: torch.Tensor) -> torch.Tensor:  # (B, C) in float32 even inside a bf16 training step:
        with torch.autocast(q.device.type, enabled=False):  # the Metropolis test compares two energies
            return pairwise_energy(energy, x, q).float()

    y = y.detach().clone()
    lead = y.shape[:2]
    view = (*lead, *([1] * (y.dim() - 2)))
    f = energy_of(y)  # (B, C), kept for the current states
    accepted = torch.zeros((), device=y.device)
    for t in range(steps):
        b = beta(t)
        p = torch.randn(y.shape, generator=generator, device=y.device)
        jitter = 0.5 + torch.rand(view, generator=generator, device=y.device)
        eps = jitter * (step_size / math.sqrt(b))  # (B, C, 1, ...)
        h_start = b * f + 0.5 * p.flatten(2).pow(2).sum(2)
        q = y
        p = p - 0.5 * eps * b * grad_of(q)
        for i in range(leapfrog):
            q, p = reflect(q + eps * p, p, space.low, space.high)
            if i < leapfrog - 1:
                p = p - eps * b * grad_of(q)
        p = p - 0.5 * eps * b * grad_of(q)
        f_new = energy_of(q)
        h_end = b * f_new + 0.5 * p.flatten(2).pow(2).sum(2)
        u = torch.rand(lead, generator=generator, device=y.device)
        accept = torch.log(u) < (h_start - h_end)  # NaN (an overflowing end point) is rejected
        y = torch.where(accept.view(view), q, y)
        f = torch.where(accept, f_new, f)
        accepted = accepted + accept.float().mean()
    return y, accepted / max(steps, 1)


class HMCInference(Inference):
    """HMC chains from uniform starts at inverse temperature beta(t) (an annealing schedule); the k
    lowest distinct final states are the candidates. The evaluation reports the chains' acceptance
    rate as the metric `acceptance` (well tuned: 0.6-0.9; near 0: step_size too large).

    Args:
        k: candidates per x.
        chains: uniform starts per x.
        steps: HMC transitions (each a fresh momentum, `leapfrog` steps and a Metropolis test).
        leapfrog: leapfrog steps per transition.
        step_size: the leapfrog step at beta = 1 (step_size / sqrt(beta) at beta).
        anneal: constant (beta_end throughout) | linear | exponential | cosine, from ...
        beta_start: ... the inverse temperature of the first transition ...
        beta_end: ... to the one of the last: a large beta ends the chains in minima.
        dedup: final states closer than this are one candidate.
        y_space: the data's y box.
        seed: seeds the starts, momenta and tests (the run's seed).
    """

    name = "hmc"
    reports = ("acceptance",)

    def __init__(self, k: int = 3, chains: int = 64, steps: int = 40, leapfrog: int = 5, step_size: float = 0.1,
                 anneal: str = "exponential", beta_start: float = 1.0, beta_end: float = 1e4,
                 dedup: float = 0.02, y_space=None, seed: int = 0):
        super().__init__(k, y_space)
        require_positive(chains=chains, steps=steps, leapfrog=leapfrog, step_size=step_size, beta_start=beta_start,
                         beta_end=beta_end)
        require_choice("anneal", anneal, ("constant", *SHAPES))
        require_non_negative(dedup=dedup)
        self.chains, self.steps, self.leapfrog, self.step_size = chains, steps, leapfrog, step_size
        self.beta = ramp(anneal, beta_start, beta_end, max(steps - 1, 1))
        self.dedup, self.seed = dedup, seed

    def check(self, energy) -> None:
        self.require_box()

    def sample(self, energy, x: torch.Tensor, y0: Optional[torch.Tensor] = None, generator=None):
        """Final chain states (B, C, *y_shape) from y0 or uniform starts, and the acceptance rate."""
        if y0 is None:
            y0 = self.y_space.sample(x.shape[0], self.chains, generator=generator, device=x.device)
        return hmc_chains(energy, x, y0, self.y_space, self.steps, self.step_size, self.leapfrog, self.beta, generator)

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k = k or self.k
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        y, acceptance = self.sample(energy, x, generator=gen)
        with torch.no_grad():
            e = pairwise_energy(energy, x, y)
        cands = select_distinct(y, e, k, self.dedup)
        # per transition leapfrog + 1 gradients and the end point's energy; the start's and the ranking's
        cands.evaluations = x.shape[0] * self.chains * (self.steps * (self.leapfrog + 2) + 2)
        cands.stats = {"acceptance": float(acceptance)}
        return attach_latent(energy, x, cands)
