"""Exhaustive inference: F on a y-grid, then the k lowest distinct local minima."""

import torch
import torch.nn.functional as F

from ebm_cli.errors import UserError
from ebm_cli.inference.common import Candidates, attach_latent, pairwise_energy, select_distinct

MAX_PAIRS_PER_CHUNK = 1 << 18  # bounds memory: (chunk of x) * (grid points) energy calls at once


class GridInference:
    """y_hat = argmin over an even grid of `points` per y dimension (y of at most 3 dimensions)."""

    def __init__(self, k: int, points: int, dedup: float):
        self.k, self.points, self.dedup = k, points, dedup

    def check(self, energy) -> None:
        if not hasattr(energy, "y_space") or energy.y_space.size > 3:
            raise UserError("inference=grid needs a continuous y of at most 3 dimensions; use inference=gradient")

    def energies(self, energy, x: torch.Tensor):
        """Grid (G, D) and F(x_b, grid_g): (B, G), computed in chunks of x."""
        grid = energy.y_space.grid(self.points, device=x.device).view(-1, *energy.y_space.shape)
        chunk = max(1, MAX_PAIRS_PER_CHUNK // grid.shape[0])
        out = []
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                xs = x[start : start + chunk]
                out.append(pairwise_energy(energy, xs, grid.unsqueeze(0).expand(xs.shape[0], *grid.shape)))
        return grid, torch.cat(out)

    def probabilities(self, energy, x: torch.Tensor, beta: float):
        """The exact Gibbs distribution on the grid: grid (G, *y_shape) and P_beta(y_g | x) (B, G),
        each row summing to 1 (a latent energy's F is its free energy at this beta)."""
        if hasattr(energy, "at_beta"):
            with energy.at_beta(beta):
                grid, e = self.energies(energy, x)
        else:
            grid, e = self.energies(energy, x)
        return grid, torch.softmax(-beta * e, dim=1)

    def __call__(self, energy, x: torch.Tensor, k: int = None) -> Candidates:
        k = k or self.k
        grid, e = self.energies(energy, x)
        b, dims = e.shape[0], energy.y_space.size
        cube = e.view(b, 1, *([self.points] * dims))
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
        # A local minimum is no higher than every neighbour (the pool pads with -inf at edges).
        is_min = (-pool(-cube, 3, stride=1, padding=1) == cube).view(b, -1)
        masked = torch.where(is_min, e, torch.full_like(e, float("inf")))
        cands = select_distinct(grid.unsqueeze(0).expand(b, *grid.shape), masked, k, self.dedup)
        cands.evaluations = b * grid.shape[0]
        return attach_latent(energy, x, cands)
