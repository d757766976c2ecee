"""Exhaustive inference: F on a y-grid, then the k lowest distinct local minima."""

from typing import Optional

import torch
import torch.nn.functional as F

from ebm_cli.core.energy import LatentEnergy, pairwise_energy
from ebm_cli.core.inference import Candidates, Inference, attach_latent, select_distinct
from ebm_cli.errors import require, require_non_negative

MAX_PAIRS_PER_CHUNK = 1 << 18  # bounds memory: (chunk of x) * (grid points) energy calls at once


class GridInference(Inference):
    """y̌ = argmin over an even grid of `points` per y dimension (a y of at most 3 dimensions).

    Args:
        k: candidates per x.
        points: grid points per y dimension.
        dedup: minima closer than this are one candidate.
        y_space: the data's y box.
    """

    name = "grid"

    def __init__(self, k: int = 3, points: int = 512, dedup: float = 0.02, y_space=None):
        super().__init__(k, y_space)
        require(points >= 2, "points", points, "must be >= 2")
        require_non_negative(dedup=dedup)
        self.points, self.dedup = points, dedup

    def check(self, energy) -> None:
        self.require_box(max_dims=3)

    def energies(self, energy, x: torch.Tensor):
        """Grid (G, *y_shape) and F(x_b, grid_g): (B, G), computed in chunks of x."""
        space = self.y_space
        grid = space.grid(self.points, device=x.device).view(-1, *space.shape)
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
        if isinstance(energy, LatentEnergy):
            with energy.at_beta(beta):
                grid, e = self.energies(energy, x)
        else:
            grid, e = self.energies(energy, x)
        return grid, torch.softmax(-beta * e, dim=1)

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k = k or self.k
        grid, e = self.energies(energy, x)
        b, dims = e.shape[0], self.y_space.size
        cube = e.view(b, 1, *([self.points] * dims))
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
        # A local minimum is no higher than every neighbour (the pool pads with -inf at edges).
        is_min = (-pool(-cube, 3, stride=1, padding=1) == cube).view(b, -1)
        masked = torch.where(is_min, e, torch.full_like(e, float("inf")))
        cands = select_distinct(grid.unsqueeze(0).expand(b, *grid.shape), masked, k, self.dedup)
        cands.evaluations = b * grid.shape[0]
        return attach_latent(energy, x, cands)
