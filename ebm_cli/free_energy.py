"""Free energies over a latent z: F_beta = -1/beta log ∫ exp(-beta E(z)) dz, and F_inf = min_z E(z).

The energy is given as a function of z alone (the caller closes over x and y):
    energy_fn(z: (B, S, *z_shape)) -> (B, S)
for a batch of B problems and S values of z each. Every method returns F: (B,) and the best z
(B, *z_shape) it saw. All of them use the shifted log-sum-exp

    F_beta = m - 1/beta log sum_s w_s exp(-beta (E_s - m)),   m = min_s E_s,

which is exact in floating point for any beta: the largest term is exp(0) = 1, so nothing
overflows at beta = 1e6 and nothing vanishes at beta = 1e-3. The weights w_s carry the volume:
the cell volume for quadrature and V / S for Monte Carlo, so values are comparable across grid
sizes and tend to (mean E) - log(V) / beta as beta -> 0. For a discrete z the "integral" is the
sum over its K values (counting measure, V = K).
"""

import math
from typing import Callable, Optional, Tuple

import torch

from ebm_cli.core.spaces import DiscreteZ, has_grid
from ebm_cli.errors import require, require_choice, require_positive

EnergyOfZ = Callable[[torch.Tensor], torch.Tensor]
METHODS = ("auto", "enumerate", "quadrature", "monte_carlo", "minimize")


def soft_min(e: torch.Tensor, beta: float, log_weight: float = 0.0) -> torch.Tensor:
    """-1/beta log sum_s exp(-beta e_s + log_weight) over the last dim; beta = inf gives min."""
    m = e.min(dim=-1).values
    if math.isinf(beta):
        return m
    shifted = torch.logsumexp(-beta * (e - m.unsqueeze(-1)), dim=-1)
    return m - (shifted + log_weight) / beta


def best_z(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """z: (B, S, *z_shape) or (S, *z_shape) shared; e: (B, S) -> argmin z: (B, *z_shape)."""
    idx = e.argmin(dim=1)
    if z.dim() == e.dim():  # shared values, one row per s
        return z[idx]
    return z[torch.arange(len(idx), device=z.device), idx]


def over_nodes(energy_fn: EnergyOfZ, z: torch.Tensor, log_weight: float, beta: float, batch: int):
    """F_beta from fixed nodes z: (S, *z_shape), shared by the batch, each of measure exp(log_weight)."""
    e = energy_fn(z.unsqueeze(0).expand(batch, *z.shape))
    return soft_min(e, beta, log_weight), best_z(z, e)


def monte_carlo(energy_fn: EnergyOfZ, space, beta: float, batch: int, samples: int, generator=None, device=None):
    """Uniform samples: ∫ exp(-beta E) dz ≈ V * mean_s exp(-beta E_s). Unbiased inside the log only."""
    z = space.sample(batch * samples, generator=generator, device=device).view(batch, samples, -1)
    e = energy_fn(z)
    return soft_min(e, beta, space.log_volume - math.log(samples)), best_z(z, e)


def minimize(energy_fn: EnergyOfZ, space, batch: int, restarts: int, steps: int, lr: float, generator=None, device=None):
    """F_inf = min_z E by Adam from `restarts` random starts (for z of higher dimension)."""
    z = space.sample(batch * restarts, generator=generator, device=device).view(batch, restarts, -1)
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(energy_fn(z).sum(), z)
        z.grad = grad
        opt.step()
        with torch.no_grad():
            z.copy_(space.project(z))
    with torch.no_grad():
        e = energy_fn(z.detach())
    return e.min(dim=1).values, best_z(z.detach(), e)


class FreeEnergy:
    """How a latent energy eliminates z: the one place F_beta / F_inf over z is computed.

    Args:
        eliminate: `softmin` (F_beta at the run's beta, which the trainer sets every step) or
            `min` (F_inf).
        method: `auto` (enumerate a discrete z; quadrature on an even grid for a box or circle whose
            grid has at most MAX_GRID_NODES points; Monte Carlo otherwise), `enumerate`,
            `quadrature`, `monte_carlo` (fresh uniform samples while training, fixed seeded nodes
            otherwise) or `minimize` (Adam on z; F_inf only).
        points: quadrature / z-sweep nodes per z dimension.
        samples: Monte Carlo draws per (x, y).
        restarts, steps, lr: `minimize`: Adam on z from this many random starts, steps, step size.
    """

    def __init__(self, eliminate: str = "softmin", method: str = "auto", points: int = 32, samples: int = 256,
                 restarts: int = 4, steps: int = 50, lr: float = 0.05):
        require_choice("eliminate", eliminate, ("softmin", "min"))
        require_choice("method", method, METHODS)
        require_positive(points=points, samples=samples, restarts=restarts, steps=steps, lr=lr)
        require(method != "minimize" or eliminate == "min", "method", method,
                "gives F_inf only: add energy.free_energy.eliminate=min")
        self.eliminate, self.method = eliminate, method
        self.points, self.samples, self.restarts, self.steps, self.lr = points, samples, restarts, steps, lr

    def check(self, space) -> None:
        """Refuse a method that cannot serve this z space (BadArgument naming `method`)."""
        discrete = isinstance(space, DiscreteZ)
        if self.method == "enumerate":
            require(discrete, "method", self.method, "needs a discrete z")
        if self.method in ("quadrature", "monte_carlo", "minimize"):
            require(not discrete, "method", self.method, "is for a continuous z; use enumerate")
        if self.method == "quadrature":
            require(space.gridded, "method", self.method, "needs a box or circle z")

    def resolved(self, space) -> str:
        """The method `auto` stands for on this space."""
        if self.method != "auto":
            return self.method
        if isinstance(space, DiscreteZ):
            return "enumerate"
        return "quadrature" if has_grid(space, self.points) else "monte_carlo"

    def nodes(self, space, device=None) -> Tuple[torch.Tensor, float]:
        """The fixed z nodes (S, *z_shape) and the log measure of each (see the spaces' `nodes`)."""
        return space.nodes(self.points, device)

    def uses_fixed_nodes(self, space, training: bool) -> bool:
        """Enumeration, quadrature, and Monte Carlo outside training: one deterministic F for
        inference and figures."""
        method = self.resolved(space)
        return method in ("enumerate", "quadrature") or (method == "monte_carlo" and not training)

    def __call__(self, energy_fn: EnergyOfZ, space, beta: float, batch: int, training: bool = False,
                 generator: Optional[torch.Generator] = None, device=None):
        """F_beta over z (beta = inf: F_inf = min_z E): (B,), and the best z seen (B, *z_shape)."""
        method = self.resolved(space)
        if self.uses_fixed_nodes(space, training):
            z, log_w = self.nodes(space, device)
            return over_nodes(energy_fn, z, log_w, beta, batch)
        if method == "monte_carlo":
            return monte_carlo(energy_fn, space, beta, batch, self.samples, generator, device)
        return minimize(energy_fn, space, batch, self.restarts, self.steps, self.lr, generator, device)
