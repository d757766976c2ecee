"""Latent-variable energies E(x, y, z); the runner sees them through their free energy F(x, y).

Eliminating z gives F_inf(x, y) = min_z E(x, y, z) (eliminate=min) or
F_beta(x, y) = -1/beta log ∫ exp(-beta E(x, y, z)) dz (eliminate=softmin, at the run's beta,
which the trainer sets every step with `set_beta`). Because forward(x, y) is that free energy,
every y-side part of the runner (grid and gradient inference, the Gibbs NLL, the hinge loss, the
landscapes) works on a latent energy unchanged, and P_beta(y | x) ∝ exp(-beta F_beta(x, y)) is
the marginal over z of the Gibbs distribution of (y, z).
"""

import math
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ebm_cli import free_energy as fe
from ebm_cli.energies.base import BoxSpace, Energy, Normalizer, log_gaussian_box_mass, mlp

MAX_GRID_NODES = fe.MAX_GRID_NODES  # a z-grid larger than this is swept by seeded samples instead
NODE_SEED = 1234  # fixed, so that the nodes of a sphere (or a large box) are the same at every call


def build_z_space(cfg):
    """DiscreteZ | BoxZ | CircleZ | SphereZ from an `energy.z` config node."""
    if cfg.kind == "discrete":
        return fe.DiscreteZ(cfg.k)
    if cfg.kind == "box":
        return fe.BoxZ(cfg.dim, cfg.low, cfg.high)
    if cfg.kind == "circle":
        return fe.CircleZ()
    if cfg.kind == "sphere":
        return fe.SphereZ(cfg.dim)
    raise ValueError(f"unknown z kind {cfg.kind!r}")


def z_shape(space) -> Tuple[int, ...]:
    return (1,) if isinstance(space, (fe.DiscreteZ, fe.CircleZ)) else (space.dim,)


def z_feature_dim(space) -> int:
    """Width of the network input that encodes z (one-hot, (cos, sin), or z itself)."""
    if isinstance(space, fe.DiscreteZ):
        return space.k
    if isinstance(space, fe.CircleZ):
        return 2
    return space.dim


def z_features(space, z: torch.Tensor) -> torch.Tensor:
    """z: (N, *z_shape) -> (N, z_feature_dim): what the networks see of z."""
    if isinstance(space, fe.DiscreteZ):
        return F.one_hot(z[:, 0].round().long(), space.k).to(z.dtype)
    if isinstance(space, fe.CircleZ):
        return torch.cat([torch.cos(z), torch.sin(z)], dim=1)
    if isinstance(space, fe.BoxZ):  # to [-1, 1], like the other inputs
        return (z - (space.low + space.high) / 2) / ((space.high - space.low) / 2)
    return z


def z_nodes(space, points: int, device=None) -> Tuple[torch.Tensor, float]:
    """Fixed z values covering the space, (S, *z_shape), and the log measure of each one.

    Discrete: the K values (weight 1). Box or circle: the midpoints of an even grid (cell volume),
    unless it has more than MAX_GRID_NODES points; then, as for a sphere, seeded uniform samples
    (volume / S each). Enumeration, quadrature, the z-sweep and the latent-usage bins all use them.
    """
    if isinstance(space, fe.DiscreteZ):
        return space.values(device), 0.0
    if not isinstance(space, fe.SphereZ) and points ** space.dim <= MAX_GRID_NODES:
        return space.grid(points, device)
    gen = torch.Generator().manual_seed(NODE_SEED)
    n = min(MAX_GRID_NODES, max(points, 2) ** min(space.dim, 3))
    return space.sample(n, generator=gen).to(device), space.log_volume - math.log(n)


class LatentEnergy(Energy):
    """Base class: subclasses define joint(x, y, z) -> (B,); forward(x, y) is the free energy."""

    def __init__(self, y_space: BoxSpace, z_space, eliminate: str = "softmin", method: str = "auto",
                 points: int = 32, samples: int = 256, restarts: int = 4, steps: int = 50, lr: float = 0.05):
        super().__init__()
        self.y_space, self.z_space = y_space, z_space
        self.eliminate, self.method = eliminate, method
        self.points, self.samples, self.restarts, self.steps, self.lr = points, samples, restarts, steps, lr
        self.beta = 1.0  # a python float: reading it never waits for the device

    # -- the inverse temperature of the soft-min over z (saved with the weights) --------------
    def set_beta(self, beta: float) -> None:
        self.beta = float(beta)

    @property
    def z_beta(self) -> float:
        """The beta that eliminates z: inf for eliminate=min."""
        return math.inf if self.eliminate == "min" else self.beta

    @contextmanager
    def at_beta(self, beta: float):
        """Temporarily F_beta at another beta (figures); beta = inf gives F_inf."""
        saved = (self.beta, self.eliminate)
        self.beta, self.eliminate = (saved[0], "min") if math.isinf(beta) else (float(beta), "softmin")
        try:
            yield self
        finally:
            self.beta, self.eliminate = saved

    def get_extra_state(self):
        return {"beta": self.beta}

    def set_extra_state(self, state) -> None:
        self.beta = float(state["beta"])

    # -- the energy itself ---------------------------------------------------------------------
    def joint(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """E(x, y, z): (B,) for x (B, *x_shape), y (B, *y_shape), z (B, *z_shape)."""
        raise NotImplementedError

    def energies(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """E(x_b, y_b, z_bs): (B, S) for z: (B, S, *z_shape)."""
        b, s = z.shape[:2]
        x_rep = x.unsqueeze(1).expand(b, s, *x.shape[1:]).reshape(b * s, *x.shape[1:])
        y_rep = y.unsqueeze(1).expand(b, s, *y.shape[1:]).reshape(b * s, *y.shape[1:])
        return self.joint(x_rep, y_rep, z.reshape(b * s, *z.shape[2:])).view(b, s)

    def nodes(self, device=None) -> Tuple[torch.Tensor, float]:
        return z_nodes(self.z_space, self.points, device)

    def resolved_method(self) -> str:
        return fe.auto_method(self.z_space, self.points) if self.method == "auto" else self.method

    def free_energy(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """F(x, y): (B,) with z eliminated as configured, and the best z seen: (B, *z_shape)."""
        beta, method, b = self.z_beta, self.resolved_method(), x.shape[0]

        def energy_of_z(z):
            return self.energies(x, y, z)

        # Fixed nodes (the same as log_partition's and the z-sweep's): enumeration, quadrature,
        # and Monte Carlo outside training, so that inference and figures see one deterministic F.
        if method in ("enumerate", "quadrature") or (method == "monte_carlo" and not self.training):
            z, log_w = self.nodes(x.device)
            return fe.over_nodes(energy_of_z, z, log_w, beta, b)
        if method == "monte_carlo":
            return fe.monte_carlo(energy_of_z, self.z_space, beta, b, samples=self.samples, device=x.device)
        # minimize (F_inf only): search z without tracking the parameters, then evaluate E at z*.
        # By the envelope theorem that gives the gradient of min_z E in both y and the weights.
        _, z = fe.minimize(energy_of_z, self.z_space, b, self.restarts, self.steps, self.lr, device=x.device)
        return self.joint(x, y, z), z

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.free_energy(x, y)[0]

    def best_z(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """argmin_z E(x_b, y_bk, z) for candidates y: (B, k, *y_shape) -> (B, k, *z_shape)."""
        b, k = y.shape[:2]
        x_rep = x.unsqueeze(1).expand(b, k, *x.shape[1:]).reshape(b * k, *x.shape[1:])
        with torch.no_grad(), self.at_beta(math.inf):
            z = self.free_energy(x_rep, y.reshape(b * k, *y.shape[2:]))[1]
        return z.view(b, k, *z.shape[1:])

    # A y-grid is needed for log Z unless a subclass knows it in closed form.
    exact_partition = False


class LatentMLPEnergy(LatentEnergy):
    """E(x, y, z) = MLP([x, y, features(z)]): the general latent energy, trained by nll or hinge."""

    def __init__(self, x_dim: int, x_low: float, x_high: float, y_space: BoxSpace, z_space,
                 hidden: int, depth: int, activation: str, **free_energy_options):
        super().__init__(y_space, z_space, **free_energy_options)
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim + y_space.size + z_feature_dim(z_space), hidden, depth, 1, activation)

    def joint(self, x, y, z):
        h = torch.cat([self.x_norm(x.flatten(1)), self.y_norm(y.flatten(1)), z_features(self.z_space, z)], dim=1)
        return self.net(h)[:, 0]


class DecodingEnergy(LatentEnergy):
    """E(x, y, z) = ||y - g(x, z)||^2 + R(x, z): every z decodes to one prediction y = g(x, z).

    g reads an encoding h = encode(x) (subclasses define `encode` and `to_y`, the map from the
    network's output to y units). Discrete z uses K output heads on h; continuous z feeds
    features(z) to the network next to h. R is the energy of z itself: `prior=none` (R = 0), `l2`
    (R = reg ||z||^2, box z), or `learned` (R = r(x, z), a network: how plausible mode z is at x;
    only the Gibbs NLL can train it, as its log Z keeps it from sinking everywhere). The capacity of
    z (K, dim, reg) is what keeps the low-energy region from covering all of y.
    """

    def __init__(self, y_space: BoxSpace, z_space, enc_dim: int, hidden: int, depth: int, activation: str,
                 prior: str = "none", reg: float = 0.0, **free_energy_options):
        super().__init__(y_space, z_space, **free_energy_options)
        self.prior, self.reg = prior, reg
        self.discrete = isinstance(z_space, fe.DiscreteZ)
        d = y_space.size
        if self.discrete:  # shared trunk, K heads of y (and K prior energies)
            k = z_space.k
            self.net = mlp(enc_dim, hidden, depth, k * d + (k if prior == "learned" else 0), activation)
        else:
            self.net = mlp(enc_dim + z_feature_dim(z_space), hidden, depth, d + (prior == "learned"), activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """h(x): (B, enc_dim)."""
        raise NotImplementedError

    def to_y(self, out: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """The network's outputs (..., D) in y units."""
        raise NotImplementedError

    def decode_all(self, x: torch.Tensor, z: torch.Tensor):
        """g(x_b, z_bs) (B, S, *y_shape) in y units, and R(x_b, z_bs) (B, S), for z: (B, S, *z_shape)."""
        b, s, d = x.shape[0], z.shape[1], self.y_space.size
        h = self.encode(x)
        if self.discrete:
            k = self.z_space.k
            out = self.net(h)  # (B, K*d [+ K])
            heads = out[:, : k * d].view(b, k, d)
            idx = z[..., 0].round().long()  # (B, S)
            g = heads.gather(1, idx[..., None].expand(b, s, d))
            r = self.prior_energy(z, out[:, k * d :].gather(1, idx) if self.prior == "learned" else None)
        else:
            feats = z_features(self.z_space, z.reshape(b * s, *z.shape[2:]))
            out = self.net(torch.cat([h.repeat_interleave(s, dim=0), feats], dim=1)).view(b, s, -1)
            g = out[..., :d]
            r = self.prior_energy(z, out[..., d] if self.prior == "learned" else None)
        return self.to_y(g).view(b, s, *self.y_space.shape), r

    def prior_energy(self, z: torch.Tensor, learned: Optional[torch.Tensor]) -> torch.Tensor:
        """R for z: (B, S, *z_shape): the network's output `learned` (B, S), reg ||z||^2, or 0."""
        if self.prior == "learned":
            return learned
        if self.prior == "l2":
            return self.reg * z.flatten(2).pow(2).sum(-1)
        return torch.zeros(z.shape[:2], device=z.device)

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The predictions y = g(x, z) that z sweeps: (B, S, *y_shape) for z (S, *z_shape) shared."""
        return self.decode_all(x, z.unsqueeze(0).expand(x.shape[0], *z.shape))[0]

    def energies(self, x, y, z):
        g, r = self.decode_all(x, z)
        return (y.unsqueeze(1) - g).flatten(2).pow(2).sum(-1) + r

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> Optional[torch.Tensor]:
        """F(x_b, y_bg) for y: (B, G, *y_shape) -> (B, G), decoding g(x, z) once per x rather than
        once per (x, y) pair: G times less work for grids, landscapes and the NLL's y-grid. None
        where z is not swept over fixed nodes (Monte Carlo while training, minimize)."""
        method = self.resolved_method()
        if method not in ("enumerate", "quadrature") and not (method == "monte_carlo" and not self.training):
            return None
        z, log_w = self.nodes(x.device)
        g, r = self.decode_all(x, z.unsqueeze(0).expand(x.shape[0], *z.shape))  # (B, S, *y_shape), (B, S)
        # explicit differences, not cdist: its matmul form loses the precision a large beta needs
        e = (y.flatten(2).unsqueeze(2) - g.flatten(2).unsqueeze(1)).pow(2).sum(-1) + r.unsqueeze(1)  # (B, G, S)
        return fe.soft_min(e, self.z_beta, log_w)

    def joint(self, x, y, z):
        return self.energies(x, y, z.unsqueeze(1))[:, 0]

    @property
    def exact_partition(self) -> bool:
        """log Z is closed-form when z is eliminated by soft-min over fixed nodes."""
        return self.eliminate == "softmin" and self.resolved_method() in ("enumerate", "quadrature")

    def log_partition(self, x: torch.Tensor, beta: float) -> Optional[torch.Tensor]:
        """log ∫dy ∫dz exp(-beta E(x, y, z)): (B,), exactly in y (a Gaussian cut by the y-box, erf)
        and over the same z-nodes as the free energy; so -log P_beta(y|x) needs no y-grid."""
        z, log_w = self.nodes(x.device)
        g, r = self.decode_all(x, z.unsqueeze(0).expand(x.shape[0], *z.shape))
        log_mass = log_gaussian_box_mass(g.flatten(2), beta, self.y_space.low, self.y_space.high)  # (B, S)
        return torch.logsumexp(-beta * r + log_mass, dim=1) + log_w


class DecoderEnergy(DecodingEnergy):
    """The decoder energy on flat x and y, with MLP networks (the curves' latent model)."""

    def __init__(self, x_dim: int, x_low: float, x_high: float, y_space: BoxSpace, z_space,
                 hidden: int, depth: int, activation: str, prior: str = "none", reg: float = 0.0,
                 **free_energy_options):
        super().__init__(y_space, z_space, x_dim, hidden, depth, activation, prior, reg, **free_energy_options)
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)

    def encode(self, x):
        return self.x_norm(x.flatten(1))

    def to_y(self, out):
        return out * self.y_norm.half_width + self.y_norm.center
