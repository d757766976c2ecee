"""Convolutional energies on frames: x is a stack of C context frames (B, C, H, W), y a frame (B, H, W).

conv_latent:    E(x, y, z) = ||y - Dec(Enc(x), z)||^2 + R(z)  (a DecodingEnergy: z picks the future)
conv_regressor: E(x, y) = ||y - Dec(Enc(x))||^2              (the MSE baseline: the mean future, a blur)
"""

from typing import Sequence

import torch
from torch import nn

from ebm_cli.energies.base import BoxSpace, activation, mlp
from ebm_cli.energies.latent import DecodingEnergy
from ebm_cli.energies.mlp import PredictorEnergy


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


class ConvLatentEnergy(DecodingEnergy):
    """E(x, y, z) = ||y - Dec(Enc(x), z)||^2 + R(z) on frames; Dec is an MLP on the encoding (K heads
    for a discrete z, or [h, features(z)] for a continuous one) with a linear output in pixel units.
    (Not a sigmoid: on frames that are mostly background it saturates at 0 within a few hundred
    steps, where its gradient vanishes, and never draws the sprite.)"""

    def __init__(self, x_shape: Sequence[int], x_low: float, x_high: float, y_space: BoxSpace, z_space,
                 channels: int, hidden: int, depth: int, activation: str, prior: str = "none", reg: float = 0.0,
                 **free_energy_options):
        super().__init__(y_space, z_space, hidden, hidden, depth, activation, prior, reg, **free_energy_options)
        self.encoder = ConvEncoder(x_shape, x_low, x_high, channels, hidden, activation)

    def encode(self, x):
        return self.encoder(x)

    def to_y(self, out):
        return self.y_space.low + (self.y_space.high - self.y_space.low) * out


class ConvRegressorEnergy(PredictorEnergy):
    """The deterministic baseline on frames: f(x) = MLP(Enc(x)) (linear output, as conv_latent's),
    E = ||y - f(x)||^2."""

    def __init__(self, x_shape: Sequence[int], x_low: float, x_high: float, y_space: BoxSpace,
                 channels: int, hidden: int, depth: int, activation: str):
        super().__init__()
        self.y_space = y_space
        self.encoder = ConvEncoder(x_shape, x_low, x_high, channels, hidden, activation)
        self.net = mlp(hidden, hidden, depth, y_space.size, activation)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.encoder(x))
        return (self.y_space.low + (self.y_space.high - self.y_space.low) * out).view(x.shape[0], *self.y_space.shape)
