"""The energy contract, and the capabilities an energy can declare.

An energy is any torch.nn.Module whose forward(x, y) returns one scalar per pair: x (B, *x_shape),
y (B, *y_shape) -> (B,), low for compatible pairs. That is all the runner needs for grid,
gradient, Langevin and derivative-free inference, the Gibbs NLL over a y-grid, the hinge and
contrastive losses, and the landscapes. The classes below declare what more an energy can do; the
inference methods and losses check them (isinstance) before anything runs:

| class              | what it declares                                   | who uses it                        |
| ------------------ | -------------------------------------------------- | ---------------------------------- |
| `LatentEnergy`     | E(x, y, z) over a z space; F = z eliminated at beta | F_beta, z of candidates, z usage   |
| `DecodingEnergy`   | every z decodes to one prediction g(x, z)          | inference=z_sweep                  |
| `PredictorEnergy`  | one prediction f(x), E = ||y - f(x)||^2            | inference=z_sweep, the MSE baseline|
| `ChainEnergy`      | unary + pairwise terms over a token sequence       | inference=dp, loss=nll (exact)     |
| `ExactPartition`   | log ∫ exp(-beta F(x, y)) dy in closed form         | loss=nll without a y-grid          |
| `BoundedLowEnergy` | the architecture bounds the low-energy region      | loss=free_energy (no negatives)    |
| `Normalised`       | F(x, y) is already -log P(y | x)                   | loss=nll is F itself               |
| `ClosedFormGradient` | grad_y F(x, y) without autograd, x's share once  | Langevin, gradient inference, cd   |
"""

import math
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ebm_cli.core.spaces import BoxSpace, DiscreteZ
from ebm_cli.dynamic_programming import forward_free_energy, sequence_energy
from ebm_cli.errors import BadArgument, require
from ebm_cli.free_energy import FreeEnergy, soft_min


class Energy(nn.Module):
    """F(x, y) -> (B,) for x (B, *x_shape) and y (B, *y_shape). Subclassing it is optional."""

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> Optional[torch.Tensor]:
        """F(x_b, y_bs) for y: (B, S, *y_shape) -> (B, S) where the energy has a faster batched form
        than evaluating every pair; None otherwise."""
        return None


def pairwise_energy(energy: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F(x_b, y_bs) for x: (B, *x_shape) and y: (B, S, *y_shape) -> (B, S), for any energy."""
    fast = energy.pairwise(x, y) if isinstance(energy, Energy) else None
    if fast is not None:
        return fast
    b, s = y.shape[:2]
    x_rep = x.unsqueeze(1).expand(b, s, *x.shape[1:]).reshape(b * s, *x.shape[1:])
    return energy(x_rep, y.reshape(b * s, *y.shape[2:])).view(b, s)


# -- capabilities that are only declarations ---------------------------------------------------------
class ExactPartition(ABC):
    """log Z(x) = log ∫ exp(-beta F(x, y)) dy is known in closed form (`exact_partition` says whether
    it is for the energy's current settings), so the Gibbs NLL needs no y-grid."""

    @property
    def exact_partition(self) -> bool:
        return True

    @abstractmethod
    def log_partition(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """log Z(x): (B,)."""


class BoundedLowEnergy(ABC):
    """The architecture bounds the volume of low energy (a regressor's one prediction, a decoder's K
    predictions), so pushing the data's energy down alone (loss=free_energy) cannot flatten it."""

    @property
    def bounds_low_energy(self) -> bool:
        return True


class Normalised(ABC):
    """F(x, y) is already -log P(y | x) (at beta = 1): the negative log-likelihood is F itself."""


class ClosedFormGradient(ABC):
    """grad_y F(x, y) is known in closed form, so samplers and gradient inference, which need it
    hundreds of times for one x, skip autograd's graph and compute x's share of it once."""

    @abstractmethod
    def y_gradient(self, x: torch.Tensor) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """For x: (B, *x_shape), a function y: (B, C, *y_shape) -> grad_y F(x_b, y_bc), same shape
        (no graph is built); None where the closed form does not cover the energy's settings."""

    @property
    def gradient_width(self) -> int:
        """Numbers per chain in the gradient's widest operation (an MLP's hidden units): samplers on the
        CPU size their blocks of chains by it (inference/langevin.py)."""
        return 64


def y_gradient(energy: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """grad_y F(x_b, y_bc) as a function of y: (B, C, *y_shape) -> (B, C, *y_shape), for any energy:
    the energy's closed form where it declares one, else autograd through pairwise_energy."""
    fast = energy.y_gradient(x) if isinstance(energy, ClosedFormGradient) else None
    if fast is not None:
        return fast

    def by_autograd(y: torch.Tensor) -> torch.Tensor:
        y = y.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(pairwise_energy(energy, x, y).sum(), y)
        return grad

    return by_autograd


def log_gaussian_box_mass(mean: torch.Tensor, beta: float, low: float, high: float) -> torch.Tensor:
    """log ∫_[low, high]^D exp(-beta ||y - mean||^2) dy for mean: (..., D), exactly -> (...).

    A product of erf differences: the Gaussian's normaliser times the share of it inside the box.
    """
    # float64, and erfc on the far side of the mean: a difference of two erf values near 1
    # would cancel in float32 when the mean lies outside the box and beta is large.
    r, m = math.sqrt(beta), mean.double()
    a, b = r * (low - m), r * (high - m)  # the box in standard units, a < b
    mass = torch.where(a > 0, torch.erfc(a) - torch.erfc(b), torch.where(b < 0, torch.erfc(-b) - torch.erfc(-a),
                                                                         torch.erf(b) - torch.erf(a)))
    log_mass = torch.log(0.5 * mass.clamp(min=1e-300))
    return (0.5 * math.log(math.pi / beta) + log_mass).sum(-1).to(mean.dtype)


# -- energies with more structure ---------------------------------------------------------------------
class PredictorEnergy(Energy, ExactPartition, BoundedLowEnergy):
    """E(x, y) = ||y - f(x)||^2 for a feed-forward f (subclasses define `predict`): one output per x.

    Trained by the Gibbs NLL this is MSE regression (log Z does not depend on f, but for the share
    of the Gaussian cut off by the y-box), so it predicts the mean of the valid y: the baseline the
    lecture argues against.

    Args:
        y_space: the y box (from the data).
    """

    def __init__(self, y_space: BoxSpace):
        super().__init__()
        self.y_space = y_space

    @abstractmethod
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): (B, *y_shape), in y units."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y - self.predict(x)).flatten(1).pow(2).sum(1)

    def log_partition(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """log ∫_box exp(-beta ||y - f(x)||^2) dy, exactly: a product of erf differences, (B,)."""
        return log_gaussian_box_mass(self.predict(x).flatten(1), beta, self.y_space.low, self.y_space.high)


class LatentEnergy(Energy):
    """E(x, y, z) with z in a z space; forward(x, y) is the free energy F(x, y), z eliminated by
    `free_energy` at the energy's beta (F_beta = -1/beta log ∫ exp(-beta E) dz, or F_inf = min_z E).

    Because forward(x, y) is that free energy, every y-side part of the runner (inference, the
    losses, the landscapes) works on a latent energy unchanged, and P_beta(y | x) ∝ exp(-beta F_beta)
    is the marginal over z of the Gibbs distribution of (y, z). The trainer sets beta every step
    (`set_beta`); it is saved with the weights.

    Subclasses define `joint(x, y, z)`, or `energies(x, y, z)` for many z at once.

    Args:
        z: the z space (energy/z=discrete|box|circle|sphere): its capacity limits low energy.
        free_energy: how z is eliminated (energy.free_energy.*); the default soft-min, method auto.
    """

    def __init__(self, z, free_energy: Optional[FreeEnergy] = None):
        super().__init__()
        self.z_space = z
        self.free_energy = free_energy if free_energy is not None else FreeEnergy()
        try:
            self.free_energy.check(z)
        except BadArgument as err:
            raise BadArgument(f"free_energy.{err.name}", err.value, err.rule) from None
        self.beta = 1.0  # a python float: reading it never waits for the device
        self._beta_at: Optional[float] = None  # at_beta's temporary value

    # -- the inverse temperature of the soft-min over z ------------------------------------------
    def set_beta(self, beta: float) -> None:
        self.beta = float(beta)

    @property
    def z_beta(self) -> float:
        """The beta that eliminates z now: at_beta's, else inf for eliminate=min, else the run's."""
        if self._beta_at is not None:
            return self._beta_at
        return math.inf if self.free_energy.eliminate == "min" else self.beta

    @contextmanager
    def at_beta(self, beta: float):
        """Temporarily F_beta at another beta (figures, Gibbs probabilities); beta = inf gives F_inf."""
        saved, self._beta_at = self._beta_at, float(beta)
        try:
            yield self
        finally:
            self._beta_at = saved

    def get_extra_state(self):
        return {"beta": self.beta}

    def set_extra_state(self, state) -> None:
        self.beta = float(state["beta"])

    # -- the energy itself ---------------------------------------------------------------------------
    def joint(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """E(x, y, z): (B,) for x (B, *x_shape), y (B, *y_shape), z (B, *z_shape)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither joint(x, y, z) nor energies(x, y, z)")

    def energies(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """E(x_b, y_b, z_bs): (B, S) for z: (B, S, *z_shape)."""
        b, s = z.shape[:2]
        x_rep = x.unsqueeze(1).expand(b, s, *x.shape[1:]).reshape(b * s, *x.shape[1:])
        y_rep = y.unsqueeze(1).expand(b, s, *y.shape[1:]).reshape(b * s, *y.shape[1:])
        return self.joint(x_rep, y_rep, z.reshape(b * s, *z.shape[2:])).view(b, s)

    def nodes(self, device=None) -> Tuple[torch.Tensor, float]:
        """The fixed z nodes (S, *z_shape) that enumeration, quadrature and the z-sweep use."""
        return self.free_energy.nodes(self.z_space, device)

    def free_energy_with_z(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """F(x, y): (B,) with z eliminated as configured, and the best z seen: (B, *z_shape)."""
        f, z = self.free_energy(lambda z: self.energies(x, y, z), self.z_space, self.z_beta, x.shape[0],
                                training=self.training, device=x.device)
        if self.free_energy.resolved(self.z_space) == "minimize":
            # z* was searched without tracking the weights; E at z* has the gradient of min_z E
            # in both y and the weights (the envelope theorem).
            return self.joint(x, y, z), z
        return f, z

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.free_energy_with_z(x, y)[0]

    def best_z(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """argmin_z E(x_b, y_bk, z) for candidates y: (B, k, *y_shape) -> (B, k, *z_shape)."""
        b, k = y.shape[:2]
        x_rep = x.unsqueeze(1).expand(b, k, *x.shape[1:]).reshape(b * k, *x.shape[1:])
        with torch.no_grad(), self.at_beta(math.inf):
            z = self.free_energy_with_z(x_rep, y.reshape(b * k, *y.shape[2:]))[1]
        return z.view(b, k, *z.shape[1:])


class DecodingEnergy(LatentEnergy, ExactPartition, BoundedLowEnergy):
    """E(x, y, z) = ||y - g(x, z)||^2 + R(x, z): every z decodes to one prediction y = g(x, z).

    Subclasses define `decode_all(x, z)`. The capacity of z (K values, a small continuous z) is
    what keeps the low-energy region from covering all of y.

    Args:
        y_space: the y box (from the data).
        z: the z space.
        free_energy: how z is eliminated.
    """

    def __init__(self, y_space: BoxSpace, z, free_energy: Optional[FreeEnergy] = None):
        super().__init__(z, free_energy)
        self.y_space = y_space

    @abstractmethod
    def decode_all(self, x: torch.Tensor, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """g(x_b, z_bs) (B, S, *y_shape) in y units, and R(x_b, z_bs) (B, S), for z: (B, S, *z_shape)."""

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The predictions y = g(x, z) that z sweeps: (B, S, *y_shape) for z (S, *z_shape) shared."""
        return self.decode_all(x, z.unsqueeze(0).expand(x.shape[0], *z.shape))[0]

    def energies(self, x, y, z):
        g, r = self.decode_all(x, z)
        return (y.unsqueeze(1) - g).flatten(2).pow(2).sum(-1) + r

    def joint(self, x, y, z):
        return self.energies(x, y, z.unsqueeze(1))[:, 0]

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> Optional[torch.Tensor]:
        """F(x_b, y_bg) for y: (B, G, *y_shape) -> (B, G), decoding g(x, z) once per x rather than
        once per (x, y) pair: G times less work for grids, landscapes and the NLL's y-grid. None
        where z is not swept over fixed nodes (Monte Carlo while training, minimize)."""
        if not self.free_energy.uses_fixed_nodes(self.z_space, self.training):
            return None
        z, log_w = self.nodes(x.device)
        g, r = self.decode_all(x, z.unsqueeze(0).expand(x.shape[0], *z.shape))  # (B, S, *y_shape), (B, S)
        # explicit differences, not cdist: its matmul form loses the precision a large beta needs
        e = (y.flatten(2).unsqueeze(2) - g.flatten(2).unsqueeze(1)).pow(2).sum(-1) + r.unsqueeze(1)  # (B, G, S)
        return soft_min(e, self.z_beta, log_w)

    @property
    def exact_partition(self) -> bool:
        """log Z is closed-form when z is eliminated by soft-min over fixed nodes."""
        return self.free_energy.eliminate == "softmin" and self.free_energy.resolved(self.z_space) in ("enumerate", "quadrature")

    def log_partition(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """log ∫dy ∫dz exp(-beta E(x, y, z)): (B,), exactly in y (a Gaussian cut by the y-box, erf)
        and over the same z-nodes as the free energy; so -log P_beta(y|x) needs no y-grid."""
        z, log_w = self.nodes(x.device)
        g, r = self.decode_all(x, z.unsqueeze(0).expand(x.shape[0], *z.shape))
        log_mass = log_gaussian_box_mass(g.flatten(2), beta, self.y_space.low, self.y_space.high)  # (B, S)
        return torch.logsumexp(-beta * r + log_mass, dim=1) + log_w


class ChainEnergy(LatentEnergy, Normalised):
    """A chain-structured energy over token sequences y (B, T) with K latent modes z:

        E(x, y, z) = sum_t u(x, z)[t, y_t] + sum_{t>1} p(z)[y_{t-1}, y_t]

    A sum of unary and pairwise terms admits exact inference by dynamic programming: Viterbi for
    argmin_y, the forward algorithm for log Z(x, z) over all S^T sequences. Each mode is a Gibbs
    distribution normalised on its own, P(y | x, z) = exp(-E) / Z(x, z), so the modes compete as a
    uniform mixture and none can win by sinking its partition function; F(x, y) is the soft-min
    over z (at the run's beta, or the min) of -log P(y | x, z): a normalised -log P(y | x) at beta = 1.

    Subclasses define `potentials(x)`.

    Args:
        z: the modes, a discrete z (energy.z.k of them; 1 = the one-mode baseline).
        free_energy: how z leaves -log P(y | x, z): `eliminate=min` (hard-EM: each pair trains the
            mode that explains it best) or `softmin` at the run's beta (soft-EM).
    """

    def __init__(self, z: DiscreteZ, free_energy: Optional[FreeEnergy] = None):
        require(isinstance(z, DiscreteZ), "z", type(z).__name__, "a chain's modes are a discrete z (energy/z=discrete)")
        super().__init__(z, free_energy)

    @property
    def k(self) -> int:
        return self.z_space.k

    @abstractmethod
    def potentials(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """u: (B, K, T, S) unary energies per mode; p: (K, S, S) transition energies [previous, next]."""

    def flat_potentials(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The K chains of every x as B*K chains: u (B*K, T, S), p (B*K, S, S)."""
        u, p = self.potentials(x)
        b, k = u.shape[:2]
        return u.reshape(b * k, *u.shape[2:]), p.unsqueeze(0).expand(b, *p.shape).reshape(b * k, *p.shape[1:])

    def mode_energies(self, x: torch.Tensor, y: torch.Tensor, potentials=None) -> torch.Tensor:
        """E(x_b, y_b, z) for every z: (B, K). potentials: potentials(x), if already computed."""
        u, p = potentials if potentials is not None else self.potentials(x)
        b, k = u.shape[:2]
        flat_p = p.unsqueeze(0).expand(b, *p.shape).reshape(b * k, *p.shape[1:])
        return sequence_energy(u.reshape(b * k, *u.shape[2:]), flat_p, y.repeat_interleave(k, dim=0)).view(b, k)

    def mode_free_energies(self, x: torch.Tensor, beta: float, potentials=None) -> torch.Tensor:
        """F_beta(x, z) = -1/beta log sum_y exp(-beta E(x, y, z)) over all S^T sequences: (B, K).
        potentials: potentials(x), if already computed. The forward algorithm runs mode by mode
        (one (B, S) x (S, S) product per step and mode) on the mode's own transition table."""
        u, p = potentials if potentials is not None else self.potentials(x)
        return forward_free_energy(u.transpose(0, 1), p, beta).transpose(0, 1)  # u: (K, B, T, S), p: (K, S, S)

    def mode_costs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """-log P(y | x, z) = E(x, y, z) + log Z(x, z) for every mode: (B, K)."""
        potentials = self.potentials(x)  # the encoder runs once for both terms
        return self.mode_energies(x, y, potentials) - self.mode_free_energies(x, 1.0, potentials)

    def energies(self, x, y, z):
        """-log P(y | x, z_s): (B, S) for mode indices z: (B, S, 1)."""
        return self.mode_costs(x, y).gather(1, z[..., 0].round().long())

    def joint(self, x, y, z):
        return self.energies(x, y, z.unsqueeze(1))[:, 0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The soft-min over modes with a uniform prior, -1/beta log (1/K) sum_z exp(-beta cost_z),
        or the min: (B,)."""
        return soft_min(self.mode_costs(x, y), self.z_beta, -math.log(self.k))


class EnergyChoice:
    """A config option that builds no energy itself: it picks one of its options from the data.

    Its node holds the options as nested nodes (`target: module.Class` and that class's own
    arguments) beside a `z` and a `free_energy` that every option shares; `choose(node, meta)`
    names the option for data with these energy arguments, with a one-line reason. The builder then
    builds that option as the energy (its errors name `energy.<option>.<key>`), and its MSE baseline
    from it; a checkpoint keeps this node and the data's arguments, so the same option is rebuilt.
    Every option is checked, the ones the data did not pick too: a bad value is a bad value.
    """

    options: Tuple[str, ...] = ()  # the keys of its option nodes

    @classmethod
    def choose(cls, node: dict, meta: dict) -> Tuple[str, str]:
        """(the key of the chosen option in node, why: one line)."""
        raise NotImplementedError
