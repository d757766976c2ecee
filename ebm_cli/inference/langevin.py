"""Langevin dynamics on y: samples of P_beta(y | x) ∝ exp(-beta F(x, y)), annealed towards minima."""

import math
import threading
from typing import Callable, List, Optional, Tuple

import torch

from ebm_cli.core.energy import ClosedFormGradient, pairwise_energy, y_gradient
from ebm_cli.core.inference import Candidates, Inference, attach_latent, select_distinct
from ebm_cli.errors import require_choice, require_non_negative, require_positive, require_positive_or_none
from ebm_cli.runtime.threads import one_thread, share_cores
from ebm_cli.schedules import SHAPES, ramp


# On the CPU, chains run in blocks of about this many numbers per operation (chains x the energy's
# gradient_width): 512 KB of float32, within a core's cache, and long enough that handing the
# interpreter from one thread to the next between operations (tens of microseconds on a virtual
# machine) stays small beside the operation. The blocks depend on the sizes only, not on the
# number of threads, so a seed gives the same chains on any CPU.
BLOCK_NUMBERS = 1 << 17


def langevin_chains(energy, x: torch.Tensor, y: torch.Tensor, space, steps: int, step_size: float,
                    beta: Callable[[int], float], grad_clip: Optional[float] = None, noise: bool = True,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Run Langevin chains from y: (B, C, *y_shape) for x: (B, *x_shape); returns the last states.

    y <- project(y - eta * g + sqrt(2 eta / beta(t)) * xi), g = grad_y F(x, y) clipped to norm
    grad_clip per chain, xi ~ N(0, 1), project = clamping into the box `space`. For a small step eta
    the chain samples exp(-beta F); with noise=False it is plain projected gradient descent.
    Nothing is read back to the host inside the loop, so the steps queue up on the device.

    On the CPU the loop runs on one thread: torch would split each small operation over all its
    threads and wait at its end for the slowest, which a busy core stalls (runtime/threads.py). Where
    there is enough work for two blocks or more (of BLOCK_NUMBERS) and the energy's gradient has a
    closed form, the chains run as independent blocks on all the cores, each on one thread, a thread
    taking the next block when it is done (runtime.threads.share_cores): a busy core then slows only
    the blocks it runs. Each block draws its noise from a generator of its own, seeded from
    `generator` (or torch's global one), so the result does not depend on which thread ran which block.
    """
    if y.numel() == 0:  # no chains (or no rows): nothing to move
        return y.detach().clone()
    blocks = _blocks(energy, x, y)
    if blocks is None:  # as it is, on torch's threads
        return _run_chains(y_gradient(energy, x), y, space, steps, step_size, beta, grad_clip, noise, generator)
    if len(blocks) == 1:  # one computation whose operations are small: on one thread
        with one_thread(y.device):
            return _run_chains(y_gradient(energy, x), y, space, steps, step_size, beta, grad_clip, noise, generator)
    seeds = (torch.randint(0, 2 ** 62, (len(blocks),), generator=generator, device="cpu").tolist() if noise
             else [None] * len(blocks))  # on the host whatever the default device (blocks are CPU-only)

    def job(rows: slice, cols: slice, seed: Optional[int]):
        def run(stop) -> torch.Tensor:
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            return _run_chains(y_gradient(energy, x[rows]), y[rows, cols], space, steps, step_size, beta, grad_clip,
                               noise, gen, stop)
        return run

    out = torch.empty_like(y)
    for (rows, cols), part in zip(blocks, share_cores([job(r, c, s) for (r, c), s in zip(blocks, seeds)])):
        out[rows, cols] = part
    return out


def _blocks(energy, x: torch.Tensor, y: torch.Tensor) -> Optional[List[Tuple[slice, slice]]]:
    """(rows of x, chains) slices of about BLOCK_NUMBERS numbers per operation each (one slice of all
    the chains where they are less than two blocks' worth), or None where the chains run as they are, on
    torch's threads: on a GPU, and for an energy without a closed-form gradient (whose operations' size
    is unknown, and autograd through a user's module is not known to be safe on several threads)."""
    b, c = y.shape[:2]
    if y.device.type != "cpu" or not isinstance(energy, ClosedFormGradient) or energy.y_gradient(x[:1]) is None:
        return None
    per_block = max(1, BLOCK_NUMBERS // max(1, energy.gradient_width))  # chains
    if b * c < 2 * per_block:
        return [(slice(None), slice(None))]
    rows, cols = max(1, per_block // c), min(c, per_block)
    return [(slice(i, i + rows), slice(j, j + cols)) for i in range(0, b, rows) for j in range(0, c, cols)]


@torch.no_grad()  # the chains need no graph (autograd's gradient turns it on for itself: y_gradient)
def _run_chains(grad_of, y: torch.Tensor, space, steps: int, step_size: float, beta: Callable[[int], float],
                grad_clip: Optional[float], noise: bool, generator: Optional[torch.Generator],
                stop: Optional[threading.Event] = None) -> torch.Tensor:
    """The chains' loop on y: (B, C, *y_shape) with grad_of(y) = grad_y F (see langevin_chains); returns
    early once `stop` is set (the caller is then raising)."""
    y = y.detach().clone(memory_format=torch.contiguous_format)
    xi = torch.empty_like(y) if noise else None  # one noise buffer, refilled in place every step
    for t in range(steps):
        if stop is not None and stop.is_set():
            break
        grad = grad_of(y)
        if grad_clip is not None:  # scale by min(1, grad_clip / |g|) per chain
            norm = torch.linalg.vector_norm(grad.flatten(2), dim=2).clamp(min=grad_clip)
            grad = grad * (grad_clip / norm).view(*norm.shape, *([1] * (grad.dim() - 2)))
        y.sub_(grad, alpha=step_size)
        if noise:
            torch.randn(y.shape, generator=generator, device=y.device, out=xi)
            y.add_(xi, alpha=math.sqrt(2 * step_size / beta(t)))
        y = space.project(y)
    return y


class LangevinInference(Inference):
    """Langevin chains from uniform starts at inverse temperature beta(t) (an annealing schedule);
    the k lowest distinct final states are the candidates, and `sample` returns all of them.

    Args:
        k: candidates per x.
        chains: uniform starts per x.
        steps: Langevin steps.
        step_size: eta.
        anneal: constant (beta_end throughout) | linear | exponential | cosine, from ...
        beta_start: ... the inverse temperature at the first step ...
        beta_end: ... to the one at the last: a large beta ends the chains in minima.
        grad_clip: max norm of grad_y F per chain; null = none.
        dedup: final states closer than this are one candidate.
        y_space: the data's y box.
        seed: seeds the starts and the noise (the run's seed).
    """

    name = "langevin"

    def __init__(self, k: int = 3, chains: int = 64, steps: int = 200, step_size: float = 3e-4,
                 anneal: str = "exponential", beta_start: float = 1.0, beta_end: float = 1000.0,
                 grad_clip: Optional[float] = 100.0, dedup: float = 0.02, y_space=None, seed: int = 0):
        super().__init__(k, y_space)
        require_positive(chains=chains, steps=steps, step_size=step_size, beta_start=beta_start, beta_end=beta_end)
        require_choice("anneal", anneal, ("constant", *SHAPES))
        require_positive_or_none(grad_clip=grad_clip)
        require_non_negative(dedup=dedup)
        self.chains, self.steps, self.step_size = chains, steps, step_size
        self.beta = ramp(anneal, beta_start, beta_end, max(steps - 1, 1))
        self.grad_clip, self.dedup, self.seed = grad_clip, dedup, seed

    def check(self, energy) -> None:
        self.require_box()

    def sample(self, energy, x: torch.Tensor, y0: Optional[torch.Tensor] = None, noise: bool = True,
               generator=None) -> torch.Tensor:
        """Final chain states (B, C, *y_shape), from y0 or from uniform starts."""
        if y0 is None:
            y0 = self.y_space.sample(x.shape[0], self.chains, generator=generator, device=x.device)
        return langevin_chains(energy, x, y0, self.y_space, self.steps, self.step_size, self.beta, self.grad_clip,
                               noise, generator)

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k = k or self.k
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        y = self.sample(energy, x, generator=gen)
        with torch.no_grad():
            e = pairwise_energy(energy, x, y)
        cands = select_distinct(y, e, k, self.dedup)
        cands.evaluations = x.shape[0] * self.chains * (self.steps + 1)
        return attach_latent(energy, x, cands)
