"""Training objectives: (energy, x, y, beta) -> (loss, figures to log)."""

import math
from typing import Dict, Tuple

import torch

from ebm_cli.inference.common import pairwise_energy

Stats = Dict[str, torch.Tensor]


class GibbsNLL:
    """-log P(y|x) with P(y|x) = exp(-beta F(x, y)) / Z(x), Z by quadrature on a y-grid.

    loss = beta F(x, y) + log sum_g exp(-beta F(x, y_g)) + log(cell volume). The grid has one
    point per cell of an even partition of the y-box, placed at a random position inside its
    cell at every step (stratified sampling): Z is then estimated without bias, so the energy
    cannot hide low values between fixed grid points, and a coarse grid is enough.
    e_neg is the model's expected energy E_P[F] over the grid, the "negative phase".
    """

    def __init__(self, grid_points: int, stratified: bool = True):
        self.grid_points, self.stratified = grid_points, stratified

    def log_partition(self, energy, x: torch.Tensor, beta: float):
        """log Z(x): (B,), and F on the grid: (B, G**D)."""
        space, b, n = energy.y_space, x.shape[0], self.grid_points
        cell = (space.high - space.low) / n
        corners = space.grid(n + 1, device=x.device)  # (n+1)**D points; keep lower corners only
        lower = corners[(corners < space.high - cell / 2).all(dim=1)]  # (n**D, D)
        if self.stratified:
            offset = torch.rand(b, 1, space.size, device=x.device) * cell
        else:
            offset = torch.full((b, 1, space.size), cell / 2, device=x.device)
        grid = (lower.unsqueeze(0) + offset).view(b, -1, *space.shape)
        e_grid = pairwise_energy(energy, x, grid)
        return torch.logsumexp(-beta * e_grid, dim=1) + space.size * math.log(cell), e_grid

    def __call__(self, energy, x, y, beta: float, step: int) -> Tuple[torch.Tensor, Stats]:
        e_pos = energy(x, y)
        log_z, e_grid = self.log_partition(energy, x, beta)
        loss = (beta * e_pos + log_z).mean()
        with torch.no_grad():
            p = torch.softmax(-beta * e_grid, dim=1)
            e_neg = (p * e_grid).sum(1).mean()
        return loss, {"e_pos": e_pos.detach().mean(), "e_neg": e_neg}


class Hinge:
    """relu(margin + F(x, y) - F(x, y_bar)): y_bar is the lowest-energy candidate of the
    inference method that lies farther than `exclude` from the data y (the most offending
    incorrect answer). Where the method finds no such y, that sample adds nothing."""

    def __init__(self, margin: float, exclude: float, inference):
        self.margin, self.exclude, self.inference = margin, exclude, inference

    def __call__(self, energy, x, y, beta: float, step: int) -> Tuple[torch.Tensor, Stats]:
        with torch.no_grad():
            cands = self.inference(energy, x, k=max(self.inference.k, 8))
            far = (cands.y - y.unsqueeze(1)).flatten(2).norm(dim=2) > self.exclude
            usable = far & cands.mask
            e = torch.where(usable, cands.energy, torch.full_like(cands.energy, float("inf")))
            pick = e.argmin(dim=1)
            y_bar = cands.y[torch.arange(len(y), device=y.device), pick]
            found = usable.any(dim=1)
        e_pos = energy(x, y)
        e_neg = energy(x, y_bar)
        loss = (torch.relu(self.margin + e_pos - e_neg) * found).mean()
        return loss, {"e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean()}
