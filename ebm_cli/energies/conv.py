"""Convolutional energies on frames: x is a stack of C context frames (B, C, H, W), y a frame (B, H, W).

conv_latent:    E(x, y, z) = ||y - Dec(Enc(x), z)||^2 + R(z)  (a decoding energy: z picks the future)
conv_regressor: E(x, y) = ||y - Dec(Enc(x))||^2              (the MSE baseline: the mean future, a blur)
"""

from typing import Optional, Sequence

import torch
from torch import nn

from ebm_cli.core.energy import PredictorEnergy
from ebm_cli.core.spaces import BoxSpace, DiscreteZ
from ebm_cli.energies.latent import MLPDecodingEnergy
from ebm_cli.energies.nets import activation, check_sizes, mlp
from ebm_cli.errors import require, require_positive
from ebm_cli.free_energy import FreeEnergy


def check_frames(x_shape: Sequence[int], y_space) -> None:
    """Conv energies read frames: x (C, H, W) and y (H, W) in a box."""
    require(len(x_shape) == 3, "x_shape", list(x_shape), "conv energies need frames, x of shape (C, H, W): "
            "use dataset=video (or an energy for flat x such as energy=mlp)")
    require(isinstance(y_space, BoxSpace), "y_space", type(y_space).__name__, "conv energies predict frames in a box")


class ConvEncoder(nn.Module):
    """(B, C, H, W) frames in [low, high] -> (B, hidden): three 3x3 convolutions (the last two with
    stride 2), then a linear layer over the flattened map, which keeps where the sprite is."""

    def __init__(self, x_shape: Sequence[int], x_low: float, x_high: float, channels: int, hidden: int, act: str):
        super().__init__()
        c, h, w = x_shape
        self.low, self.scale = x_low, 2.0 / max(x_high - x_low, 1e-6)
        self.convs = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), activation(act),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), activation(act),
            nn.Conv2d(2 * channels, 2 * channels, 3, stride=2, padding=1), activation(act),
            nn.Flatten(),
        )
        with torch.no_grad():
            width = self.convs(torch.zeros(1, c, h, w)).shape[1]
        self.out = nn.Sequential(nn.Linear(width, hidden), activation(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs((x - self.low) * self.scale - 1.0))  # pixels to [-1, 1]


class ConvLatentEnergy(MLPDecodingEnergy):
    """E(x, y, z) = ||y - Dec(Enc(x), z)||^2 + R(z) on frames; Dec is an MLP on the encoding (K heads
    for a discrete z, or [h, features(z)] for a continuous one) with a linear output in pixel units.
    (Not a sigmoid: on frames that are mostly background it saturates at 0 within a few hundred
    steps, where its gradient vanishes, and never draws the sprite.)

    Args:
        channels: of the first convolution (then 2x, 2x).
        hidden, depth, activation: the encoding width and the decoder MLP.
        prior, reg: R(z), as for energy=decoder.
        z: the z space (its capacity: energy.z.k futures).
        free_energy: how z is eliminated.
        x_shape, x_low, x_high, y_space: from the data (frames).
    """

    def __init__(self, channels: int = 16, hidden: int = 256, depth: int = 1, activation: str = "silu",
                 prior: str = "none", reg: float = 0.0, z=None, free_energy: Optional[FreeEnergy] = None, *,
                 x_shape: Sequence[int], x_low: float, x_high: float, y_space: BoxSpace):
        check_frames(x_shape, y_space)
        require_positive(channels=channels)
        super().__init__(y_space, z if z is not None else DiscreteZ(3), free_energy, hidden, hidden, depth, activation,
                         prior, reg)
        self.encoder = ConvEncoder(x_shape, x_low, x_high, channels, hidden, activation)

    def encode(self, x):
        return self.encoder(x)

    def to_y(self, out):
        return self.y_space.low + (self.y_space.high - self.y_space.low) * out


class ConvRegressorEnergy(PredictorEnergy):
    """The deterministic baseline on frames: f(x) = MLP(Enc(x)) (linear output, as conv_latent's),
    E = ||y - f(x)||^2.

    Args:
        channels, hidden, depth, activation: as for energy=conv_latent.
        x_shape, x_low, x_high, y_space: from the data (frames).
    """

    def __init__(self, channels: int = 16, hidden: int = 256, depth: int = 1, activation: str = "silu", *,
                 x_shape: Sequence[int], x_low: float, x_high: float, y_space: BoxSpace):
        check_frames(x_shape, y_space)
        require_positive(channels=channels)
        check_sizes(hidden, depth, activation)
        super().__init__(y_space)
        self.encoder = ConvEncoder(x_shape, x_low, x_high, channels, hidden, activation)
        self.net = mlp(hidden, hidden, depth, y_space.size, activation)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.encoder(x))
        return (self.y_space.low + (self.y_space.high - self.y_space.low) * out).view(x.shape[0], *self.y_space.shape)
