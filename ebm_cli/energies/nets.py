"""Building blocks of the built-in energies: MLPs, activations, input scaling."""

import torch
from torch import nn

from ebm_cli.errors import require_choice, require_non_negative, require_positive

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU}


def check_sizes(hidden: int, depth: int, activation: str) -> None:
    """The usual arguments of a network: hidden > 0, depth >= 0, a known activation."""
    require_positive(hidden=hidden)
    require_non_negative(depth=depth)
    require_choice("activation", activation, tuple(ACTIVATIONS))


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def mlp(n_in: int, hidden: int, depth: int, n_out: int, act: str) -> nn.Sequential:
    """n_in -> `depth` hidden layers of `hidden` units -> n_out (linear output)."""
    layers, width = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation(act)]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class Normalizer(nn.Module):
    """Maps a box [low, high] to [-1, 1] so that the network sees well-scaled inputs."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.register_buffer("center", torch.tensor((low + high) / 2))
        self.register_buffer("half_width", torch.tensor(max((high - low) / 2, 1e-6)))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.center) / self.half_width
