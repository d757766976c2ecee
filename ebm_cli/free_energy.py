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
from dataclasses import dataclass
from typing import Callable, Tuple

import torch

EnergyOfZ = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DiscreteZ:
    """z in {0, ..., K-1}, fed to energies as a float index of shape (1,)."""

    k: int

    def values(self, device=None) -> torch.Tensor:
        return torch.arange(self.k, device=device, dtype=torch.float32)[:, None]  # (K, 1)

    @property
    def log_volume(self) -> float:
        return math.log(self.k)


@dataclass(frozen=True)
class BoxZ:
    """z in [low, high]^dim (Lebesgue measure)."""

    dim: int
    low: float = -1.0
    high: float = 1.0

    def grid(self, points: int, device=None) -> Tuple[torch.Tensor, float]:
        """Midpoints of points**dim equal cells: (points**dim, dim), and log of one cell's volume."""
        width = (self.high - self.low) / points
        axis = self.low + width * (torch.arange(points, device=device, dtype=torch.float32) + 0.5)
        mesh = torch.meshgrid(*([axis] * self.dim), indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=-1), self.dim * math.log(width)

    def sample(self, n: int, generator=None, device=None) -> torch.Tensor:
        u = torch.rand(n, self.dim, generator=generator, device=device)
        return self.low + (self.high - self.low) * u

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(self.low, self.high)

    @property
    def log_volume(self) -> float:
        return self.dim * math.log(self.high - self.low)


@dataclass(frozen=True)
class CircleZ:
    """An angle z in [0, 2 pi) with periodic ends (arc-length measure); shape (1,)."""

    dim: int = 1

    def grid(self, points: int, device=None) -> Tuple[torch.Tensor, float]:
        width = 2 * math.pi / points
        return (width * torch.arange(points, device=device, dtype=torch.float32))[:, None], math.log(width)

    def sample(self, n: int, generator=None, device=None) -> torch.Tensor:
        return 2 * math.pi * torch.rand(n, 1, generator=generator, device=device)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return torch.remainder(z, 2 * math.pi)

    @property
    def log_volume(self) -> float:
        return math.log(2 * math.pi)


@dataclass(frozen=True)
class SphereZ:
    """A unit vector z on the sphere S^(dim-1) in R^dim (surface measure); Monte Carlo only."""

    dim: int

    def sample(self, n: int, generator=None, device=None) -> torch.Tensor:
        g = torch.randn(n, self.dim, generator=generator, device=device)
        return g / g.norm(dim=1, keepdim=True)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z / z.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    @property
    def log_volume(self) -> float:  # area of S^(d-1): 2 pi^(d/2) / Gamma(d/2)
        return math.log(2) + (self.dim / 2) * math.log(math.pi) - math.lgamma(self.dim / 2)


MAX_GRID_NODES = 4096  # a z-grid larger than this is replaced by Monte Carlo samples


def auto_method(space, points: int) -> str:
    """enumerate (discrete z), quadrature (a box or circle grid of <= MAX_GRID_NODES), monte_carlo."""
    if isinstance(space, DiscreteZ):
        return "enumerate"
    if isinstance(space, (BoxZ, CircleZ)) and points ** space.dim <= MAX_GRID_NODES:
        return "quadrature"
    return "monte_carlo"


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


def enumerate_discrete(energy_fn: EnergyOfZ, space: DiscreteZ, beta: float, batch: int, device=None):
    """Exact: every one of the K values of z."""
    return over_nodes(energy_fn, space.values(device), 0.0, beta, batch)


def quadrature(energy_fn: EnergyOfZ, space, beta: float, batch: int, points: int = 64, device=None):
    """Midpoint rule on an even z-grid (low-dimensional z): sum_g exp(-beta E_g) * cell volume."""
    z, log_cell = space.grid(points, device)
    return over_nodes(energy_fn, z, log_cell, beta, batch)


def monte_carlo(energy_fn: EnergyOfZ, space, beta: float, batch: int, samples: int = 1024, generator=None, device=None):
    """Uniform samples: ∫ exp(-beta E) dz ≈ V * mean_s exp(-beta E_s). Unbiased inside the log only."""
    z = space.sample(batch * samples, generator=generator, device=device).view(batch, samples, -1)
    e = energy_fn(z)
    return soft_min(e, beta, space.log_volume - math.log(samples)), best_z(z, e)


def minimize(energy_fn: EnergyOfZ, space, batch: int, restarts: int = 8, steps: int = 200, lr: float = 0.05,
             generator=None, device=None):
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


def free_energy(energy_fn: EnergyOfZ, space, beta: float, batch: int, method: str = "auto", device=None, **options):
    """F_beta over z (beta = inf: F_inf = min_z E) by the method that suits the space.

    auto: enumeration for a discrete z, quadrature for a box or circle whose grid has at most
    MAX_GRID_NODES points, Monte Carlo otherwise (a sphere, or more dimensions); `minimize`
    gives F_inf only.
    """
    if method == "auto":
        method = auto_method(space, options.get("points", 64))
    if method == "enumerate":
        return enumerate_discrete(energy_fn, space, beta, batch, device)
    if method == "quadrature":
        return quadrature(energy_fn, space, beta, batch, device=device, **options)
    if method == "monte_carlo":
        return monte_carlo(energy_fn, space, beta, batch, device=device, **options)
    if method == "minimize":
        if not math.isinf(beta):
            raise ValueError("method=minimize computes F_inf only: use beta=inf, or quadrature / monte_carlo")
        return minimize(energy_fn, space, batch, device=device, **options)
    raise ValueError(f"unknown free-energy method {method!r}")
