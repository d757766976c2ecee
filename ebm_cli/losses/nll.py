"""loss=nll: the negative log-likelihood of the data under the Gibbs distribution of the energy."""

from typing import Optional, Tuple

import torch

from ebm_cli.core.energy import ExactPartition, Normalised, pairwise_energy
from ebm_cli.core.loss import Loss, Stats
from ebm_cli.core.spaces import is_continuous
from ebm_cli.errors import UserError, require

MAX_GRID_DIMS = 3  # a y-grid of grid_points**D cells is affordable up to here


class NLL(Loss):
    """-log P(y|x) with P(y|x) = exp(-beta F(x, y)) / Z(x):

        loss = beta F(x, y) + log Z(x),   Z(x) = ∫ exp(-beta F(x, y')) dy'.

    log Z is taken in closed form where the energy has one (ExactPartition: a regressor, a decoder
    with z enumerated or on a grid), and otherwise by quadrature on a y-grid with one point per cell
    of an even partition of the y-box, placed at a random position inside its cell at every step
    (stratified sampling): Z is then estimated without bias, so the energy cannot hide low values
    between fixed grid points, and a coarse grid is enough. For an energy that is already
    normalised (a chain with per-mode log Z by the forward algorithm) the loss is F itself.
    e_neg is the model's expected energy E_P[F] over the grid, the "negative phase". The data's pairs
    and the grid go through the energy as one batch (so an energy whose output for a pair depends
    on the rest of its batch, e.g. BatchNorm in training mode, sees both together).

    Args:
        grid_points: cells per y dimension of the y-grid.
        stratified: a random point in each cell at every step (unbiased); False: the cell midpoints.
        y_space: the data's y space.
    """

    name = "nll"
    normalises_over_y = True

    def __init__(self, grid_points: int = 32, stratified: bool = True, y_space=None):
        require(grid_points >= 2, "grid_points", grid_points, "must be >= 2")
        self.grid_points, self.stratified, self.y_space = grid_points, stratified, y_space

    def check(self, energy) -> None:
        if isinstance(energy, Normalised) or (isinstance(energy, ExactPartition) and energy.exact_partition):
            return
        space = self.y_space
        if not is_continuous(space) or space.size > MAX_GRID_DIMS:
            what = "a token sequence" if not is_continuous(space) else f"{space.size} dimensions"
            raise UserError(f"loss=nll takes log Z on a y-grid, which {what} cannot have, and "
                            f"{type(energy).__name__} has no log Z in closed form (for a latent decoder: "
                            "energy.free_energy.eliminate=softmin with method enumerate or quadrature)")

    def log_partition(self, energy, x: torch.Tensor, beta: float, y: Optional[torch.Tensor] = None):
        """log Z(x): (B,), F on the grid: (B, G**D), and with the data's y (B, *y_shape) F(x, y): (B,)
        (else None), from the same pass of the energy: one forward and backward instead of two."""
        grid, log_cell = self.y_space.stratified(x.shape[0], self.grid_points, self.stratified, device=x.device)
        if y is not None:  # the data's y as cell 0
            grid = torch.cat([y.unsqueeze(1).to(grid.dtype), grid], dim=1)
        e = pairwise_energy(energy, x, grid)  # (B, [1 +] G**D)
        e_pos, e_grid = (e[:, 0], e[:, 1:]) if y is not None else (None, e)
        return torch.logsumexp(-beta * e_grid, dim=1) + log_cell, e_grid, e_pos

    def __call__(self, energy, x, y, beta: float) -> Tuple[torch.Tensor, Stats]:
        if isinstance(energy, Normalised):  # F is -log P(y | x) already
            e_pos = energy(x, y)
            return e_pos.mean(), {"e_pos": e_pos.detach().mean()}
        if isinstance(energy, ExactPartition) and energy.exact_partition:  # Z(x) in closed form: exact, cheap
            e_pos = energy(x, y)
            log_z = energy.log_partition(x, beta)
            stats = {"log_z": log_z.detach().mean()}
        else:
            log_z, e_grid, e_pos = self.log_partition(energy, x, beta, y)
            with torch.no_grad():
                stats = {"e_neg": (torch.softmax(-beta * e_grid, dim=1) * e_grid).sum(1).mean()}
        loss = (beta * e_pos + log_z).mean()
        return loss, {"e_pos": e_pos.detach().mean(), **stats}
