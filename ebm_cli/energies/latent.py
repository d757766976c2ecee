"""Latent-variable energies on flat x and y: the decoder E = ||y - g(x, z)||^2 + R(x, z) and the
general E = MLP([x, y, features(z)]). The runner sees both through their free energy F(x, y)."""

from typing import Optional, Tuple

import torch

from ebm_cli.core.energy import DecodingEnergy, LatentEnergy
from ebm_cli.core.spaces import BoxSpace, BoxZ, DiscreteZ
from ebm_cli.energies.nets import Normalizer, check_sizes, mlp
from ebm_cli.errors import require, require_choice, require_non_negative
from ebm_cli.free_energy import FreeEnergy


class LatentMLPEnergy(LatentEnergy):
    """E(x, y, z) = MLP([x, y, features(z)]): the general latent energy, trained by nll or hinge.

    Args:
        hidden, depth, activation: the MLP.
        z: the z space.
        free_energy: how z is eliminated.
        x_dim, x_low, x_high, y_space: from the data.
    """

    def __init__(self, hidden: int = 64, depth: int = 2, activation: str = "silu", z=None,
                 free_energy: Optional[FreeEnergy] = None, *, x_dim: int, x_low: float, x_high: float,
                 y_space: BoxSpace):
        super().__init__(z if z is not None else DiscreteZ(3), free_energy)
        check_sizes(hidden, depth, activation)
        self.y_space = y_space
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)
        self.net = mlp(x_dim + y_space.size + self.z_space.feature_dim, hidden, depth, 1, activation)

    def joint(self, x, y, z):
        h = torch.cat([self.x_norm(x.flatten(1)), self.y_norm(y.flatten(1)), self.z_space.features(z)], dim=1)
        return self.net(h)[:, 0]


class MLPDecodingEnergy(DecodingEnergy):
    """A decoding energy whose decoder is an MLP on an encoding h = encode(x) (subclasses define
    `encode` and `to_y`, the map from the network's outputs to y units):

        E(x, y, z) = ||y - g(x, z)||^2 + R(x, z)

    A discrete z uses K output heads on h; a continuous z feeds features(z) to the network next to
    h. R is the energy of z itself: `prior=none` (R = 0), `l2` (R = reg ||z||^2, box z) or
    `learned` (R = r(x, z), a network: how plausible mode z is at x; only the Gibbs NLL can train
    it, as its log Z keeps it from sinking everywhere).
    """

    def __init__(self, y_space: BoxSpace, z, free_energy: Optional[FreeEnergy], enc_dim: int, hidden: int, depth: int,
                 activation: str, prior: str, reg: float):
        super().__init__(y_space, z, free_energy)
        check_sizes(hidden, depth, activation)
        require_choice("prior", prior, ("none", "l2", "learned"))
        require_non_negative(reg=reg)
        require(prior != "l2" or isinstance(z, BoxZ), "prior", prior,
                f"R(z) = reg ||z||^2 needs a box z (energy/z=box), not {type(z).__name__}")
        self.prior, self.reg = prior, reg
        self.discrete = isinstance(z, DiscreteZ)
        d, learned = y_space.size, prior == "learned"
        if self.discrete:  # shared trunk, K heads of y (and K prior energies)
            k = z.k
            self.net = mlp(enc_dim, hidden, depth, k * d + (k if learned else 0), activation)
        else:
            self.net = mlp(enc_dim + z.feature_dim, hidden, depth, d + learned, activation)

    @property
    def bounds_low_energy(self) -> bool:
        """A learned prior can sink everywhere unless a log Z holds it up."""
        return self.prior in ("none", "l2")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """h(x): (B, enc_dim)."""
        raise NotImplementedError

    def to_y(self, out: torch.Tensor) -> torch.Tensor:
        """The network's outputs (..., D) in y units."""
        raise NotImplementedError

    def decode_all(self, x: torch.Tensor, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
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
            feats = self.z_space.features(z.reshape(b * s, *z.shape[2:]))
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


class DecoderEnergy(MLPDecodingEnergy):
    """The decoder energy on flat x and y (the curves' latent model): E = ||y - g(x, z)||^2 + R(x, z).

    Args:
        hidden, depth, activation: the decoder MLP.
        prior: R(x, z): none | l2 (reg ||z||^2, box z) | learned (a network, for loss=nll).
        reg: the weight of the l2 prior.
        z: the z space (energy/z=...): its capacity (K, dim, reg) limits low energy.
        free_energy: how z is eliminated.
        x_dim, x_low, x_high, y_space: from the data.
    """

    def __init__(self, hidden: int = 64, depth: int = 2, activation: str = "silu", prior: str = "none",
                 reg: float = 0.0, z=None, free_energy: Optional[FreeEnergy] = None, *, x_dim: int, x_low: float,
                 x_high: float, y_space: BoxSpace):
        super().__init__(y_space, z if z is not None else DiscreteZ(3), free_energy, x_dim, hidden, depth, activation,
                         prior, reg)
        self.x_norm = Normalizer(x_low, x_high)
        self.y_norm = Normalizer(y_space.low, y_space.high)

    def encode(self, x):
        return self.x_norm(x.flatten(1))

    def to_y(self, out):
        return out * self.y_norm.half_width + self.y_norm.center
