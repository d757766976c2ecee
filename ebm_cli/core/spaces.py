"""Spaces: where y lives (a continuous box, or token sequences) and where a latent z lives.

y spaces come from the data (the runner gives them to inference methods, losses and the energies
that ask for one); z spaces are part of a latent energy's config (`energy/z=discrete|box|circle|
sphere`). Each z space knows its shape, how networks see it (`features`), and the fixed nodes that
enumeration, quadrature, the z-sweep and the figures use (`nodes`).
"""

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ebm_cli.errors import require, require_positive

MAX_GRID_NODES = 4096  # a z-grid larger than this is replaced by seeded samples
NODE_SEED = 1234  # fixed, so that sampled nodes (a sphere, a large box) are the same at every call


# -- y spaces ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxSpace:
    """A continuous box [low, high]^shape (the same bounds on every coordinate)."""

    low: float
    high: float
    shape: Tuple[int, ...] = (1,)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        require(math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high,
                "y box", f"[{self.low}, {self.high}]", "needs finite bounds, low < high")

    def grid(self, points: int, device=None) -> torch.Tensor:
        """An even grid over the box: (points**D, D) for a flat y of D coordinates."""
        axis = torch.linspace(self.low, self.high, points, device=device)
        mesh = torch.meshgrid(*([axis] * self.size), indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=-1)

    def stratified(self, batch: int, cells: int, jitter: bool = True, device=None) -> Tuple[torch.Tensor, float]:
        """One point in each of the cells**D equal cells of the box, at a random offset shared by the
        cells of a row (the midpoints with jitter=False): (B, cells**D, *shape), and the log volume
        of one cell. Over steps the points cover the box, so nothing can hide between them."""
        cell = (self.high - self.low) / cells
        corners = self.grid(cells + 1, device=device)  # (cells+1)**D points; keep the lower corners only
        lower = corners[(corners < self.high - cell / 2).all(dim=1)]  # (cells**D, D)
        if jitter:
            offset = torch.rand(batch, 1, self.size, device=device) * cell
        else:
            offset = torch.full((batch, 1, self.size), cell / 2, device=device)
        return (lower.unsqueeze(0) + offset).view(batch, -1, *self.shape), self.size * math.log(cell)

    def project(self, y: torch.Tensor) -> torch.Tensor:
        return y.clamp(self.low, self.high)

    def sample(self, *batch: int, generator=None, device=None) -> torch.Tensor:
        """Uniform points in the box: (*batch, *shape)."""
        u = torch.rand(*batch, *self.shape, generator=generator, device=device)
        return self.low + (self.high - self.low) * u

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_config(self) -> dict:
        """A `_target_` node that rebuilds this space (saved in checkpoints)."""
        return {"_target_": f"{__name__}.BoxSpace", "low": self.low, "high": self.high, "shape": list(self.shape)}


@dataclass(frozen=True)
class SequenceSpace:
    """Token sequences of `length` positions, each one of `states` symbols: y (B, length) ids.

    With `eos` set, a sequence ends at its first `eos` (or `pad`, where set) and what follows is
    padding: `canonical` writes every sequence so, so that two paths that read as one sentence
    ("w1 w2 <eos>" and "w1 w2 <pad>") are one candidate, and are scored as the sentence they read.
    """

    states: int
    length: int
    eos: Optional[int] = None
    pad: Optional[int] = None

    @property
    def shape(self) -> Tuple[int, ...]:
        return (self.length,)

    @property
    def end_ids(self) -> Tuple[int, ...]:
        """The symbols that end a sentence: (eos, pad), (eos) without a pad, () without an eos."""
        return tuple(i for i in (self.eos, self.pad) if i is not None) if self.eos is not None else ()

    def ends(self, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Where each sequence y (..., length) ends: its first end symbol (a bool mask, one position or
        none), and every position after it."""
        ended = torch.zeros_like(y, dtype=torch.bool)
        for i in self.end_ids:
            ended |= y == i
        at_or_after = ended.long().cumsum(-1) > 0
        first = at_or_after & ~torch.cat([torch.zeros_like(at_or_after[..., :1]), at_or_after[..., :-1]], dim=-1)
        return first, at_or_after & ~first

    def canonical(self, y: torch.Tensor) -> torch.Tensor:
        """y (..., length) ids -> the same sentences, each ended by `eos` and then `pad` (or `eos`
        again, without a `pad`); without an `eos` the ids as they are."""
        if self.eos is None:
            return y
        first, after = self.ends(y)
        filler = self.end_ids[-1]
        return torch.where(first, torch.full_like(y, self.eos), torch.where(after, torch.full_like(y, filler), y))

    def to_config(self) -> dict:
        return {"_target_": f"{__name__}.SequenceSpace", "states": self.states, "length": self.length,
                "eos": self.eos, "pad": self.pad}


def is_continuous(space) -> bool:
    """A y that gradient, sampling and grid methods can move through."""
    return isinstance(space, BoxSpace)


# -- z spaces ------------------------------------------------------------------------------------
class ZSpace:
    """Where a latent z lives. Each space says its shape, how networks see z (`features`: (N, *shape)
    -> (N, feature_dim)), its fixed `nodes(points)` with the log measure of each, `sample`,
    `project` and `log_volume`; `gridded` spaces have an even `grid(points)` for quadrature."""

    gridded = False
    shape: Tuple[int, ...] = (1,)


class VectorZ(ZSpace):
    """A z that is a vector of `dim` numbers (a subclass sets `dim`): shape (dim,), and networks see
    dim features."""

    @property
    def shape(self) -> Tuple[int, ...]:
        return (self.dim,)

    @property
    def feature_dim(self) -> int:
        return self.dim


@dataclass(frozen=True)
class DiscreteZ(ZSpace):
    """z in {0, ..., K-1}, fed to energies as a float index of shape (1,); networks see it one-hot.

    Args:
        k: the number of values (the capacity of z).
    """

    k: int = 3

    def __post_init__(self):
        require(self.k >= 1, "k", self.k, "must be >= 1")

    shape = (1,)

    @property
    def feature_dim(self) -> int:
        return self.k

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """z: (N, 1) -> (N, K) one-hot."""
        return F.one_hot(z[:, 0].round().long(), self.k).to(z.dtype)

    def values(self, device=None) -> torch.Tensor:
        return torch.arange(self.k, device=device, dtype=torch.float32)[:, None]  # (K, 1)

    def nodes(self, points: int, device=None) -> Tuple[torch.Tensor, float]:
        """Every value, each of weight 1 (counting measure)."""
        return self.values(device), 0.0

    @property
    def log_volume(self) -> float:
        return math.log(self.k)


@dataclass(frozen=True)
class BoxZ(VectorZ):
    """z in [low, high]^dim (Lebesgue measure); networks see it scaled to [-1, 1].

    Args:
        dim: dimension of z.
        low, high: the bounds of every coordinate.
    """

    dim: int = 1
    low: float = -1.0
    high: float = 1.0
    gridded = True

    def __post_init__(self):
        require(self.dim >= 1, "dim", self.dim, "must be >= 1")
        require(math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high, "low", self.low,
                f"must be finite and below high={self.high}")

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return (z - (self.low + self.high) / 2) / ((self.high - self.low) / 2)

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

    def nodes(self, points: int, device=None) -> Tuple[torch.Tensor, float]:
        return _grid_or_samples(self, points, device)

    @property
    def log_volume(self) -> float:
        return self.dim * math.log(self.high - self.low)


@dataclass(frozen=True)
class CircleZ(ZSpace):
    """An angle z in [0, 2 pi) with periodic ends (arc-length measure); networks see (cos z, sin z)."""

    gridded = True
    dim = 1
    shape = (1,)
    feature_dim = 2

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.cos(z), torch.sin(z)], dim=1)

    def grid(self, points: int, device=None) -> Tuple[torch.Tensor, float]:
        width = 2 * math.pi / points
        return (width * torch.arange(points, device=device, dtype=torch.float32))[:, None], math.log(width)

    def sample(self, n: int, generator=None, device=None) -> torch.Tensor:
        return 2 * math.pi * torch.rand(n, 1, generator=generator, device=device)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return torch.remainder(z, 2 * math.pi)

    def nodes(self, points: int, device=None) -> Tuple[torch.Tensor, float]:
        return _grid_or_samples(self, points, device)

    @property
    def log_volume(self) -> float:
        return math.log(2 * math.pi)


@dataclass(frozen=True)
class SphereZ(VectorZ):
    """A unit vector z on the sphere S^(dim-1) in R^dim (surface measure); Monte Carlo only.

    Args:
        dim: the dimension of the vector (>= 2).
    """

    dim: int = 2

    def __post_init__(self):
        require(self.dim >= 2, "dim", self.dim, "must be >= 2 for a sphere")

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def sample(self, n: int, generator=None, device=None) -> torch.Tensor:
        g = torch.randn(n, self.dim, generator=generator, device=device)
        return g / g.norm(dim=1, keepdim=True)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z / z.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    def nodes(self, points: int, device=None) -> Tuple[torch.Tensor, float]:
        return _grid_or_samples(self, points, device)

    @property
    def log_volume(self) -> float:  # area of S^(d-1): 2 pi^(d/2) / Gamma(d/2)
        return math.log(2) + (self.dim / 2) * math.log(math.pi) - math.lgamma(self.dim / 2)


def has_grid(space, points: int) -> bool:
    """A box or circle whose even grid of points**dim nodes is small enough to sweep."""
    return space.gridded and points ** space.dim <= MAX_GRID_NODES


def _grid_or_samples(space, points: int, device=None) -> Tuple[torch.Tensor, float]:
    """Fixed z covering a continuous space, (S, *z_shape), and the log measure of each one: the
    midpoints of an even grid (cell volume), unless it has more than MAX_GRID_NODES points; then, as
    for a sphere, seeded uniform samples (volume / S each)."""
    require_positive(points=points)
    if has_grid(space, points):
        return space.grid(points, device)
    gen = torch.Generator().manual_seed(NODE_SEED)  # drawn on the host (the same nodes on every device), then moved
    n = min(MAX_GRID_NODES, max(points, 2) ** min(space.dim, 3))
    return space.sample(n, generator=gen, device="cpu").to(device), space.log_volume - math.log(n)


def flat_size(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)
