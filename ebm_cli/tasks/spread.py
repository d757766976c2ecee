"""How much the energy varies over the y box at the held-out inputs: the measure of a collapse.

A loss that only pushes the data's energy down (the energy loss), or one without a margin, can let
a flexible energy go flat: every y equally good, nothing learned that inference could use. The
spread is measured on fixed y points (an even grid for a y of up to two coordinates, else seeded
uniform points of the box), at held-out inputs spread over the test set:

    energy_range = mean_x (max_y F(x, y) - min_y F(x, y))
    energy_gap   = mean_x (min over incorrect y of F(x, y) - mean over valid y of F(x, y))

"incorrect" = farther than twice the data's eps from every valid output of x (clearly wrong: a
candidate there misses coverage@eps by a factor of two), so that the gap is not just the rise of
a smooth well over its first eps. A landscape is flat when
beta * energy_range < the threshold: the Gibbs density exp(-beta F) then varies by less than that
factor of e over the whole box. Token sequences have no box: their energies are not measured.
"""

import math
from typing import Dict, Optional

import torch

from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.spaces import is_continuous

GRID_DIMS = 2  # an even grid up to this many y coordinates, uniform samples above
# (held-out inputs, y points) per measurement: ~4096 evaluations of a small energy on a grid, and
# far fewer of a frame energy (each evaluation a network on an image), which is logged as often.
SIZES = {"grid": (32, 128), "samples": (8, 32)}
INCORRECT = 2.0  # incorrect y: farther than this many eps from every valid one


def _points(space, count: int, device) -> torch.Tensor:
    """(G, *y_shape) fixed points of the box: a grid, or seeded uniform samples."""
    if space.size <= GRID_DIMS:
        return space.grid(max(2, int(count ** (1 / space.size))), device=device).view(-1, *space.shape)
    gen = torch.Generator().manual_seed(0)  # the same points every time, and the run's RNG untouched
    return space.sample(count, generator=gen, device="cpu").to(device)


@torch.no_grad()
def energy_spread(energy, data, device, with_gap: bool = True) -> Optional[Dict[str, float]]:
    """{"energy_range", "energy_gap"} of `energy` on `data`'s held-out inputs (no gap where no point
    is incorrect, or with_gap=False); None for a y with no box.
    Computed in eval mode; the energy's train/eval mode is restored."""
    space = data.y_space
    if not is_continuous(space) or len(data.x_test) == 0:
        return None
    max_inputs, count = SIZES["grid" if space.size <= GRID_DIMS else "samples"]
    m = min(max_inputs, len(data.x_test))
    idx = torch.linspace(0, len(data.x_test) - 1, m, device="cpu").round().long()  # rows of the host data
    points = _points(space, count, device)  # (G, *y_shape)
    x = data.x_test[idx].to(device)
    was_training = energy.training
    energy.eval()
    try:
        f = pairwise_energy(energy, x, points.unsqueeze(0).expand(m, *points.shape)).float()  # (M, G)
        out = {"energy_range": float((f.max(1).values - f.min(1).values).mean())}
        if with_gap:
            valid, mask = data.valid[idx], data.valid_mask[idx]  # (M, V, *y_shape), (M, V)
            dist = data.distance(points.cpu().unsqueeze(0).expand(m, *points.shape), valid)  # (M, G, V)
            incorrect = ~((dist <= INCORRECT * data.eps) & mask[:, None, :]).any(2)  # (M, G)
            e_valid = pairwise_energy(energy, x, valid.to(device)).float().cpu()  # (M, V)
            e_valid = torch.where(mask, e_valid, 0.0).sum(1) / mask.sum(1).clamp(min=1)
            e_bad = torch.where(incorrect, f.cpu(), math.inf).min(1).values
            usable = incorrect.any(1) & mask.any(1)
            if usable.any():  # else undefined (every point near a valid y): left out, not NaN
                out["energy_gap"] = float((e_bad - e_valid)[usable].mean())
        return out
    finally:
        energy.train(was_training)


def is_flat(energy_range: float, beta: float, threshold: float) -> bool:
    """beta * energy_range below the threshold: exp(-beta F) is almost uniform over the box."""
    return math.isfinite(energy_range) and beta * energy_range < threshold
