"""U-Net frame energies: the context's appearance reaches the prediction through skip connections.

The conv energies (conv.py) squeeze the context into one vector and draw the next frame from it with
an MLP: on generated squares that is enough (the decoder only learns a position), but on sprites
whose shapes vary it memorises the training clips and draws a blurry, generic sprite on new ones.
Here the decoder upsamples back to full resolution and reads the encoder's feature maps at each
scale (U-Net skips), so the pixels of the context frames are at hand where the next frame is drawn;
a global bottleneck over the whole coarse map says where the sprite goes.

unet_latent:    E(x, y, z) = ||y - U(x, z)||^2 + R(z)   (one output per z value, or z fed at the
                bottleneck for a continuous z)
unet_regressor: E(x, y) = ||y - U(x)||^2                 (the MSE baseline on the same backbone)

Two heads turn the decoder's last map into a frame (`decoder=`):
- pixels: the frame itself, one channel per output;
- warp:   a displacement field plus a residual. Each output pixel is a softmax-weighted mix of the
          last context frame's pixels within `reach` of it (a per-pixel kernel: where the pixel came
          from), plus a residual for what was not there. Moving a sprite is then a choice of source
          pixels, the same for every appearance: nothing about how sprites look has to be
          learned (the pixel head redraws them). With this head the network also reads the
          motion between the last two context frames: for each offset of the same window, how well
          the last frame matches the one before at that offset (a matching cost, as in optical
          flow). Where a sprite moved by v, offset -v matches, whatever the sprite looks like.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ebm_cli.core.energy import DecodingEnergy, PredictorEnergy
from ebm_cli.core.spaces import BoxSpace, BoxZ, DiscreteZ
from ebm_cli.energies.conv import check_frames
from ebm_cli.energies.nets import activation as make_activation
from ebm_cli.energies.nets import check_sizes
from ebm_cli.errors import require, require_choice, require_non_negative, require_positive
from ebm_cli.free_energy import FreeEnergy


def conv_block(c_in: int, c_out: int, act: str, stride: int = 1, dropout: float = 0.0) -> nn.Sequential:
    """Two 3x3 convolutions (the first with `stride`), each followed by the activation."""
    layers = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), make_activation(act),
              nn.Conv2d(c_out, c_out, 3, padding=1), make_activation(act)]
    if dropout:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


DECODERS = ("pixels", "warp")


class FrameHead(nn.Module):
    """The decoder's last map (B, M * per_output, H, W) -> M frames (B, M, H, W) in [0, 1] units of
    the input box (`decoder=`: pixels | warp, module docstring). The warp's kernel over the
    (2 reach + 1)^2 window is a product of a distribution over the row offset and one over the column
    offset (2 (2 reach + 1) logits per pixel instead of (2 reach + 1)^2): a sharp displacement is
    such a product, and the softmaxes stay short.

    Args:
        decoder: pixels | warp.
        reach: warp: how far (pixels, per axis) a pixel may come from.
    """

    def __init__(self, decoder: str, reach: int):
        super().__init__()
        self.decoder, self.reach = decoder, reach
        self.width = 2 * reach + 1
        self.per_output = 1 if decoder == "pixels" else 2 * self.width + 1  # row, column logits + residual

    def forward(self, maps: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """maps (B, M * per_output, H, W), last: the last context frame in [0, 1] (B, H, W) -> (B, M, H, W)."""
        if self.decoder == "pixels":
            return maps
        b, _, h, w = maps.shape
        rows, cols, residual = maps.view(b, -1, self.per_output, h * w).split([self.width, self.width, 1], dim=2)
        sources = F.unfold(last[:, None], self.width, padding=self.reach)  # (B, width^2, HW): last(p + o)
        sources = sources.view(b, 1, self.width, self.width, h * w)
        by_row = (sources * cols.softmax(dim=2)[:, :, None]).sum(dim=3)  # (B, M, width, HW)
        moved = (by_row * rows.softmax(dim=2)).sum(dim=2)  # (B, M, HW): where each pixel comes from
        return (moved + residual[:, :, 0]).view(b, -1, h, w)


def matching_cost(prev: torch.Tensor, last: torch.Tensor, reach: int) -> torch.Tensor:
    """How well each pixel q of `last` matches `prev` at q + o, for every offset o of the
    (2 reach + 1)^2 window (row-major, as FrameHead's), prev, last (B, H, W) in [0, 1] ->
    (B, window, H, W): the squared difference, 0 = a match. A pixel that moved by v matches at
    o = -v. Data only: no gradient."""
    b, h, w = last.shape
    with torch.no_grad():
        shifted = F.unfold(prev[:, None], 2 * reach + 1, padding=reach).view(b, -1, h, w)  # prev(q + o)
        return (shifted - last[:, None]).pow(2)


def check_unet(x_shape, x_low: float, x_high: float, y_space, channels: int, hidden: int, activation: str,
               dropout: float, decoder: str, reach: int) -> None:
    """The settings both U-Net energies share, each refused in one line."""
    check_frames(x_shape, y_space)
    require_positive(channels=channels)
    check_sizes(hidden, 1, activation)
    require(0 <= dropout < 1, "dropout", dropout, "must be in [0, 1)")
    require_choice("decoder", decoder, DECODERS)
    require(isinstance(reach, int) and reach >= 1, "reach", reach, "must be an integer >= 1 (pixels)")
    same_box = math.isclose(x_low, y_space.low, abs_tol=1e-6) and math.isclose(x_high, y_space.high, abs_tol=1e-6)
    require(decoder != "warp" or same_box, "decoder", decoder, f"moves the context's pixels, so the frames "
            f"and the futures need one range: x in [{x_low:g}, {x_high:g}], y in [{y_space.low:g}, {y_space.high:g}] "
            f"(or energy.decoder=pixels)")


class UNet(nn.Module):
    """(B, C, H, W) frames in [x_low, x_high] -> (B, out, H, W), with an optional condition (B, cond_dim)
    fed at the bottleneck. The encoder works at H/2 and H/4; at H/4 a fully connected bottleneck of
    width `hidden` sees the whole map; the decoder upsamples (transposed convolutions) and
    concatenates the encoder's map of the same scale, and at full resolution the context frames
    themselves, before one last convolution. (Full-resolution layers cost the most, and a sprite
    moves further than one 3x3 window there: its appearance travels through the H/2 maps.)

    Args:
        x_shape: (C, H, W) of the input.
        out: output channels.
        channels: at H/2 (2x at H/4).
        hidden: bottleneck width.
        act: activation.
        cond_dim: width of the condition (0 = none).
        dropout: channel dropout after each encoder block (a regulariser; 0 = off).
        decoder, reach: the frame head (FrameHead).
    """

    def __init__(self, x_shape: Sequence[int], x_low: float, x_high: float, out: int, channels: int, hidden: int,
                 act: str, cond_dim: int = 0, dropout: float = 0.0, decoder: str = "pixels", reach: int = 3):
        super().__init__()
        frames, h, w = x_shape
        c = channels
        self.frames, self.reach = frames, reach
        self.low, self.scale = x_low, 2.0 / max(x_high - x_low, 1e-6)
        self.motion = decoder == "warp" and frames >= 2  # the matching cost of the last two frames
        c_in = frames + ((2 * reach + 1) ** 2 if self.motion else 0)
        self.enc1 = conv_block(c_in, c, act, stride=2, dropout=dropout)  # (B, c, H/2, W/2)
        self.enc2 = conv_block(c, 2 * c, act, stride=2, dropout=dropout)  # (B, 2c, H/4, W/4)
        with torch.no_grad():
            coarse = self.enc2(self.enc1(torch.zeros(1, c_in, h, w))).shape[1:]
        self.coarse = tuple(coarse)
        flat = coarse.numel()
        self.squeeze = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), make_activation(act))
        self.expand = nn.Sequential(nn.Linear(hidden + cond_dim, flat), make_activation(act))
        self.dec2 = conv_block(4 * c, 2 * c, act)  # the coarse map and what the bottleneck drew
        self.up2 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec1 = conv_block(2 * c, c, act)
        self.up1 = nn.ConvTranspose2d(c, c, 2, stride=2)
        self.head = FrameHead(decoder, reach)
        # full resolution costs the most: there the last layers read the frames, not the matching cost
        self.out = nn.Sequential(nn.Conv2d(c + frames, c, 3, padding=1), make_activation(act),
                                 nn.Conv2d(c, out * self.head.per_output, 1))
        if decoder == "warp":  # start as the mean of each window and no residual: a blurred last frame
            nn.init.zeros_(self.out[-1].weight)
            nn.init.zeros_(self.out[-1].bias)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The context in [-1, 1] (B, C, H, W) (with the warp head, then the matching cost of its last
        two frames (B, window, H, W)), the encoder's maps at H/2 and H/4, the bottleneck (B, hidden)."""
        s0 = (x - self.low) * self.scale - 1.0
        if self.motion:
            unit = (s0[:, -2:] + 1.0) / 2.0  # the last two frames in [0, 1]
            s0 = torch.cat([s0, matching_cost(unit[:, 0], unit[:, 1], self.reach)], dim=1)
        s1 = self.enc1(s0)
        s2 = self.enc2(s1)
        return s0, s1, s2, self.squeeze(s2)

    def decode(self, skips: Tuple[torch.Tensor, ...], cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        """skips from `encode` (each (B, ...)), cond (B, cond_dim) -> (B, out, H, W) in [0, 1] units."""
        s0, s1, s2, code = skips
        if cond is not None:
            code = torch.cat([code, cond], dim=1)
        u = self.dec2(torch.cat([s2, self.expand(code).view(-1, *self.coarse)], dim=1))
        u = self.dec1(torch.cat([s1, _fit(self.up2(u), s1)], dim=1))
        maps = self.out(torch.cat([s0[:, : self.frames], _fit(self.up1(u), s0)], dim=1))
        return self.head(maps, (s0[:, self.frames - 1] + 1.0) / 2.0)  # the last context frame in [0, 1]


def _fit(u: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """u resized to like's height and width (odd sizes: a stride-2 map upsampled is one pixel off)."""
    return u if u.shape[-2:] == like.shape[-2:] else F.interpolate(u, size=like.shape[-2:], mode="nearest")


class UNetLatentEnergy(DecodingEnergy):
    """E(x, y, z) = ||y - U(x, z)||^2 + R(z) on frames, U a U-Net (module docstring). A discrete z
    is one output channel per value (all K futures in one pass); a continuous z enters at the
    bottleneck. Outputs are linear in pixel units.

    Args:
        channels: at H/2 (2x at H/4).
        hidden: the bottleneck width.
        activation: the nonlinearity.
        dropout: channel dropout in the encoder (0 = off).
        decoder: the frame head: pixels | warp (module docstring).
        reach: warp: how far (pixels, per axis) a pixel may move in one frame.
        prior: R(z): none | l2 (reg ||z||^2, box z).
        reg: the weight of the l2 prior.
        z: the z space (its capacity: energy.z.k futures).
        free_energy: how z is eliminated.
        x_shape, x_low, x_high, y_space: from the data (frames).
    """

    baseline = "ebm_cli.energies.unet.UNetRegressorEnergy"  # the MSE baseline on the same backbone

    def __init__(self, channels: int = 16, hidden: int = 128, activation: str = "silu", dropout: float = 0.0,
                 decoder: str = "pixels", reach: int = 3, prior: str = "none", reg: float = 0.0, z=None,
                 free_energy: Optional[FreeEnergy] = None, *,
                 x_shape: Sequence[int], x_low: float, x_high: float, y_space: BoxSpace):
        check_unet(x_shape, x_low, x_high, y_space, channels, hidden, activation, dropout, decoder, reach)
        require_choice("prior", prior, ("none", "l2"))
        require_non_negative(reg=reg)
        z = z if z is not None else DiscreteZ(3)
        require(prior != "l2" or isinstance(z, BoxZ), "prior", prior,
                f"R(z) = reg ||z||^2 needs a box z (energy/z=box), not {type(z).__name__}")
        super().__init__(y_space, z, free_energy)
        self.prior, self.reg = prior, reg
        self.discrete = isinstance(z, DiscreteZ)
        out, cond = (z.k, 0) if self.discrete else (1, z.feature_dim)
        self.net = UNet(x_shape, x_low, x_high, out, channels, hidden, activation, cond, dropout, decoder, reach)

    def decode_all(self, x: torch.Tensor, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W), z (B, S, *z_shape) -> g (B, S, H, W) in pixel units, R (B, S)."""
        b, s = x.shape[0], z.shape[1]
        skips = self.net.encode(x)
        if self.discrete:
            frames = self.net.decode(skips)  # (B, K, H, W): every z value's future at once
            idx = z[..., 0].round().long()  # (B, S)
            g = frames.gather(1, idx[..., None, None].expand(b, s, *frames.shape[2:]))
        else:  # each z sample decoded from the same encoder maps
            feats = self.z_space.features(z.reshape(b * s, *z.shape[2:]))
            g = self.net.decode(tuple(t.repeat_interleave(s, dim=0) for t in skips), feats).view(b, s, *x.shape[2:])
        r = self.reg * z.flatten(2).pow(2).sum(-1) if self.prior == "l2" else torch.zeros(b, s, device=x.device)
        low, high = self.y_space.low, self.y_space.high
        return (low + (high - low) * g).view(b, s, *self.y_space.shape), r


class UNetRegressorEnergy(PredictorEnergy):
    """The deterministic baseline on the U-Net backbone: f(x) = U(x), E = ||y - f(x)||^2 (what MSE
    training gives: the mean future).

    Args:
        channels, hidden, activation, dropout, decoder, reach: as for energy=unet_latent.
        x_shape, x_low, x_high, y_space: from the data (frames).
    """

    def __init__(self, channels: int = 16, hidden: int = 128, activation: str = "silu", dropout: float = 0.0,
                 decoder: str = "pixels", reach: int = 3, *,
                 x_shape: Sequence[int], x_low: float, x_high: float, y_space: BoxSpace):
        check_unet(x_shape, x_low, x_high, y_space, channels, hidden, activation, dropout, decoder, reach)
        super().__init__(y_space)
        self.net = UNet(x_shape, x_low, x_high, 1, channels, hidden, activation, 0, dropout, decoder, reach)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net.decode(self.net.encode(x))[:, 0]  # (B, H, W)
        return (self.y_space.low + (self.y_space.high - self.y_space.low) * out).view(x.shape[0], *self.y_space.shape)
