"""What every inference method shares: its result type, batched energy calls, distinct minima."""

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Candidates:
    """k candidates per input, best (lowest energy) first.

    y: (B, k, *y_shape); energy: (B, k); mask: (B, k), False where fewer than k distinct minima
    were found (those slots repeat the best candidate and must be ignored); z: latent or None.
    evaluations: how many single (x, y) energy evaluations the search used.
    """

    y: torch.Tensor
    energy: torch.Tensor
    mask: torch.Tensor
    z: Optional[torch.Tensor] = None
    evaluations: int = 0


def pairwise_energy(energy, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F(x_b, y_bs) for x: (B, *x_shape) and y: (B, S, *y_shape) -> (B, S)."""
    fast = energy.pairwise(x, y) if hasattr(energy, "pairwise") else None  # an energy's own batched form
    if fast is not None:
        return fast
    b, s = y.shape[:2]
    x_rep = x.unsqueeze(1).expand(b, s, *x.shape[1:]).reshape(b * s, *x.shape[1:])
    return energy(x_rep, y.reshape(b * s, *y.shape[2:])).view(b, s)


def _take(v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """v: (B, S, *shape) gathered along S by index: (B, n) -> (B, n, *shape)."""
    b, n = index.shape
    return v.gather(1, index.view(b, n, *([1] * (v.dim() - 2))).expand(b, n, *v.shape[2:]))


def select_distinct(y: torch.Tensor, e: torch.Tensor, k: int, tol: float, z: Optional[torch.Tensor] = None) -> Candidates:
    """The k lowest-energy points that are pairwise more than `tol` apart (greedy, best first).
    This reads the number of finite points back from the device once.

    y: (B, S, *y_shape), e: (B, S) with +inf marking points that are not candidates at all;
    z: (B, S, *z_shape), the latent that produced each point, kept alongside.
    """
    b = e.shape[0]
    order = torch.argsort(e, dim=1)
    # Only the finite points can be kept: drop the columns past the longest finite run (for a
    # grid, a handful of local minima out of hundreds of points), so the loop below stays short.
    s = max(1, int(torch.isfinite(e).sum(dim=1).max()))
    order = order[:, :s]
    e = e.gather(1, order)
    y = _take(y, order)
    z = _take(z, order) if z is not None else None
    flat = y.reshape(b, s, -1)
    flat = flat if flat.is_floating_point() else flat.float()  # token ids: identical sequences are 0 apart
    close = torch.cdist(flat, flat) <= tol  # (B, S, S)
    keep = torch.zeros(b, s, dtype=torch.bool, device=e.device)
    finite = torch.isfinite(e)
    # Greedy non-maximum suppression over the sorted list; S is small (tens to hundreds).
    for i in range(s):
        shadowed = (keep[:, :i] & close[:, :i, i]).any(dim=1)
        keep[:, i] = finite[:, i] & ~shadowed
    # Stable sort puts kept points first, still in energy order.
    rank = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
    if rank.shape[1] < k:  # fewer points than k: pad with the best one
        rank = torch.cat([rank, rank[:, :1].expand(b, k - rank.shape[1])], dim=1)
    mask = torch.arange(k, device=e.device) < keep.sum(dim=1, keepdim=True)
    rank = torch.where(mask, rank, rank[:, :1])
    return Candidates(y=_take(y, rank), energy=e.gather(1, rank), mask=mask,
                      z=_take(z, rank) if z is not None else None)


def attach_latent(energy, x: torch.Tensor, cands: Candidates) -> Candidates:
    """For a latent energy, the z of each candidate: argmin_z E(x, y, z), so that inference on
    F_inf(x, y) = min_z E is the joint argmin over (y, z)."""
    if hasattr(energy, "best_z"):
        cands.z = energy.best_z(x, cands.y)
    return cands
