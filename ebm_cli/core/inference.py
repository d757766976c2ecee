"""The inference contract: infer(energy, x, k) -> Candidates, and what every method shares."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch

from ebm_cli.core.energy import LatentEnergy
from ebm_cli.core.spaces import BoxSpace, is_continuous
from ebm_cli.errors import UserError, require_positive


@dataclass
class Candidates:
    """k candidates per input, best (lowest energy) first.

    y: (B, k, *y_shape); energy: (B, k); mask: (B, k), False where fewer than k distinct minima
    were found (those slots repeat the best candidate and must be ignored); z: latent or None.
    evaluations: how many single (x, y) energy evaluations the search used.
    stats: what the search reports about itself (its class's `reports`), e.g. an acceptance rate.
    """

    y: torch.Tensor
    energy: torch.Tensor
    mask: torch.Tensor
    z: Optional[torch.Tensor] = None
    evaluations: int = 0
    stats: Dict[str, float] = field(default_factory=dict)


def concat(parts) -> Candidates:
    """The candidates of consecutive chunks of inputs as one: their evaluations summed, their stats
    averaged over inputs."""
    if len(parts) == 1:
        return parts[0]
    sizes = [len(p.y) for p in parts]
    stats = {k: sum(p.stats[k] * n for p, n in zip(parts, sizes)) / sum(sizes) for k in parts[0].stats}
    z = torch.cat([p.z for p in parts]) if parts[0].z is not None else None
    return Candidates(torch.cat([p.y for p in parts]), torch.cat([p.energy for p in parts]),
                      torch.cat([p.mask for p in parts]), z, sum(p.evaluations for p in parts), stats)


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
    if isinstance(energy, LatentEnergy):
        cands.z = energy.best_z(x, cands.y)
    return cands


class Inference(ABC):
    """y̌ = argmin_y F(x, y), k distinct candidates per x: `infer(energy, x, k)` -> Candidates.

    Constructors take their settings as keyword arguments; the runner adds, by name, what a method
    asks for: `y_space` (the data's y space) and `seed` (the run's). `check(energy)` runs before
    training and says in one line why a method cannot serve an energy.

    Args:
        k: candidates returned per x.
        y_space: where y lives (from the data).
    """

    name = "inference"  # how messages name it: the built-ins' config option, else the class name
    reports: Tuple[str, ...] = ()  # metrics its candidates carry in Candidates.stats (e.g. acceptance)
    score = "energy F(x, y)"  # what Candidates.energy holds, as task=infer's table names it

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def __init__(self, k: int, y_space=None):
        require_positive(k=k)
        self.k, self.y_space = k, y_space

    def check(self, energy) -> None:
        """Raise UserError if this method cannot serve `energy` on this y space."""

    def require_box(self, max_dims: Optional[int] = None, flat: bool = False, why: str = "") -> BoxSpace:
        """The y space, which must be a continuous box (of at most max_dims coordinates; flat)."""
        space = self.y_space
        if not is_continuous(space):
            raise UserError(f"inference={self.name} searches a continuous y in a box; this data's y is "
                            f"{type(space).__name__}{why or ': use inference=dp for token sequences'}")
        if max_dims is not None and space.size > max_dims:
            raise UserError(f"inference={self.name} needs a y of at most {max_dims} dimensions, not {space.size}"
                            f"{why or ': use inference=gradient'}")
        if flat and len(space.shape) != 1:
            raise UserError(f"inference={self.name} needs a flat y, not shape {tuple(space.shape)}"
                            f"{why or ' (frames: use inference=z_sweep or gradient)'}")
        return space

    @abstractmethod
    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        """The k (default self.k) best distinct candidates for x: (B, *x_shape)."""
