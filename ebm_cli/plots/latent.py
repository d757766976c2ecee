"""What a latent energy does with z: E over (y, z), the ribbon y(z), z usage, F_beta at several beta.

Pure tensors in and out, plus matplotlib figures drawn from them (for TensorBoard and figures/).
"""

import math
from typing import Dict, Sequence

import torch
from matplotlib.ticker import MaxNLocator

from ebm_cli.core.energy import ChainEnergy, DecodingEnergy
from ebm_cli.core.spaces import DiscreteZ

from ebm_cli.plots.landscape import draw_landscape, energy_grid, finite_max, log_norm, plt, shown

USAGE_POINTS = 16  # z-bins per continuous dimension for latent usage
USAGE_CHUNK = 256  # (x, y) pairs scored at once
MIN_SHARE_USED = 0.01  # a z value (or bin) that wins at least this share of the pairs is "used"


def z_label(energy) -> str:
    """The label of the z axis: the values, z itself (1-D), or the index of a node."""
    if isinstance(energy.z_space, DiscreteZ):
        return "z value"
    return "z" if energy.z_space.shape == (1,) else "z node (index)"


def axis_positions(z: torch.Tensor) -> torch.Tensor:
    """Where each z node sits on a plot axis: z itself if 1-D (or a discrete value), else its index."""
    return z[:, 0].float() if z.shape[1] == 1 else torch.arange(len(z), dtype=torch.float32, device=z.device)


@torch.no_grad()
def joint_energy(energy, space, x0: Sequence[float], resolution: int, device=None):
    """E(x0, y, z) for each x0 over a y-grid of the box `space` and the z nodes: ys (R,),
    z (S, *z_shape), E (n_x0, S, R)."""
    z, _ = energy.nodes(device)
    ys = torch.linspace(space.low, space.high, resolution, device=device)
    out = []
    for xv in x0:
        x = torch.full((resolution, 1), float(xv), device=device)
        e = energy.energies(x, ys[:, None], z.unsqueeze(0).expand(resolution, *z.shape))  # (R, S)
        out.append(e.T)
    return ys.cpu(), z.cpu(), torch.stack(out).cpu()


@torch.no_grad()
def ribbon(energy, space, x0: Sequence[float], resolution: int, device=None):
    """The prediction each z makes at x0: y(z) = g(x0, z) for a decoder, argmin_y E(x0, y, z)
    otherwise. Returns z (S, *z_shape) and y (n_x0, S) (first y coordinate)."""
    x = torch.tensor([float(v) for v in x0], device=device)[:, None]
    z, _ = energy.nodes(device)
    if isinstance(energy, DecodingEnergy):
        y = space.project(energy.decode(x, z)).flatten(2)[..., 0]
    else:
        ys, _, e = joint_energy(energy, space, x0, resolution, device)
        y = ys[e.argmin(dim=2)]
    return z.cpu(), y.cpu()


@torch.no_grad()
def latent_usage(energy, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of the (x, y) pairs that each z value (or bin) explains best, argmin_z E: (S,), scored
    USAGE_CHUNK pairs at a time.

    x: (M, *x_shape), y: (M, V, *y_shape) with mask (M, V) (the test inputs and their valid sets).
    """
    m, v = y.shape[:2]
    x_rep = x.unsqueeze(1).expand(m, v, *x.shape[1:])[mask]
    pairs = y[mask]
    z = None if isinstance(energy, ChainEnergy) else energy.z_space.nodes(USAGE_POINTS, x.device)[0]
    nodes = energy.k if z is None else len(z)
    winners = []
    for i in range(0, len(pairs), USAGE_CHUNK):  # thousands of big frames at once would need GBs
        xs, ys = x_rep[i : i + USAGE_CHUNK], pairs[i : i + USAGE_CHUNK]
        if z is None:  # a chain with K modes: every z at once
            winners.append(energy.mode_costs(xs, ys).argmin(dim=1))
        else:
            winners.append(energy.energies(xs, ys, z.unsqueeze(0).expand(len(ys), *z.shape)).argmin(dim=1))
    winners = torch.cat(winners) if winners else torch.zeros(0, dtype=torch.long, device=x.device)
    found = torch.bincount(winners, minlength=nodes).double().cpu()
    return found / found.sum().clamp(min=1)


def usage_metrics(shares: torch.Tensor) -> Dict[str, float]:
    """latent_entropy (nats; log S when every z is used equally, 0 for a collapse) and latent_used."""
    p = shares[shares > 0]
    return {"latent_entropy": float(-(p * p.log()).sum()) + 0.0,  # + 0.0: no "-0" for a collapse
            "latent_used": float((shares >= MIN_SHARE_USED).sum())}


@torch.no_grad()
def beta_landscapes(energy, space, x_low: float, x_high: float, betas: Sequence[float], resolution: int, device=None):
    """F_beta(x, y) on an (x, y) grid for each beta (inf = F_inf): xs, ys, [F (R_y, R_x), ...]."""
    maps = []
    for b in betas:
        with energy.at_beta(b):
            xs, ys, f = energy_grid(energy, space, x_low, x_high, resolution, device)
        maps.append(f)
    return xs, ys, maps


def _beta_label(b: float) -> str:
    return "β=∞ (min over z)" if math.isinf(b) else f"β={b:g}"


def plot_beta_landscapes(xs, ys, maps, betas, points=None):
    """F_beta(x, y) - min_y F_beta, one panel per beta (two rows from four panels on: the image stays
    narrow enough to read at TensorBoard's card size), on one log colour scale with one colour bar:
    the same shade is the same energy in every panel."""
    n = len(maps)
    rows = 1 if n <= 3 else 2
    cols = -(-n // rows)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols + 0.8, 2.3 * rows), dpi=100, squeeze=False,
                             layout="constrained")
    vmax = max(finite_max(f - f.min(dim=0, keepdim=True).values) for f in maps)
    for ax, f, b in zip(axes.flat, maps, betas):
        im = draw_landscape(ax, xs, ys, f, points=points, colorbar=False, vmax=vmax)
        ax.set_title(_beta_label(b), fontsize=9)
        ax.get_legend() and ax.get_legend().remove()  # a legend would cover a quarter of a small panel
        ax.set(xlabel="", ylabel="")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle("free energy F_β(x, y) − min_y  (x across, y up)", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), pad=0.01, label="log scale")
    return fig


def integer_ticks(axis) -> None:
    """Ticks on whole numbers only: a discrete z has no value 0.5."""
    axis.set_major_locator(MaxNLocator(integer=True))


def plot_joint(ys, z, e, x0, z_label: str):
    """E(x0, y, z) - min as heat maps over (y, z), one panel per x0, on a log colour scale (one
    colour bar); whole-number ticks for a discrete z."""
    n = len(x0)
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n + 0.9, 2.6), dpi=100, squeeze=False, layout="constrained")
    t = axis_positions(z)
    half = float(t[1] - t[0]) / 2 if len(t) > 1 else 0.5  # rows are centred on their z
    rels = [ej - ej.min() for ej in e]
    norm = log_norm(max(finite_max(r) for r in rels))
    for ax, rel, xv in zip(axes[0], rels, x0):
        im = ax.imshow(shown(rel, norm), origin="lower", aspect="auto", cmap="magma", norm=norm,
                       interpolation="nearest", extent=[float(ys[0]), float(ys[-1]), float(t[0]) - half, float(t[-1]) + half])
        ax.set_title(f"E(x={xv:g}, y, z)")
        ax.set_xlabel("y")
        if z_label != "z":  # a discrete value or a node's index
            integer_ticks(ax.yaxis)
    axes[0, 0].set_ylabel(z_label)
    fig.colorbar(im, ax=list(axes[0]), pad=0.01, label="E − min (log scale)")
    return fig


def plot_ribbon(z, y, x0, z_label: str, valid=None):
    """y(z) for each x0: the set of outputs that z traces; valid: per x0 a tensor of valid y."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    t = axis_positions(z)
    for j, xv in enumerate(x0):
        # discrete z values are not ordered: markers only, no line between them
        style = {"marker": "o", "ls": "none"} if z_label == "z value" else {"marker": "o" if len(t) <= 16 else None}
        line = ax.plot(t, y[j], ms=5, label=f"ŷ(z) at x={xv:g}", **style)[0]
        for v in (valid[j] if valid is not None else []):
            ax.axhline(float(v), color=line.get_color(), ls=":", lw=0.8)
    if z_label != "z":  # a discrete value or a node's index
        integer_ticks(ax.xaxis)
    ax.set_xlabel(z_label)
    ax.set_ylabel("predicted y")
    ax.set_title("predictions swept by z (dotted: valid y)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_usage(shares: torch.Tensor, discrete: bool):
    """The share of held-out (x, y) pairs that each z value (or bin) explains best, one bar each."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0), dpi=100)
    shares = shares.cpu()  # drawn on the host
    ax.bar(torch.arange(len(shares), device="cpu").numpy(), shares.numpy(), color="tab:blue")
    integer_ticks(ax.xaxis)
    ax.set_xlabel("z value" if discrete else "z bin (node index)")
    ax.set_ylabel("share of held-out pairs")
    ax.set_title("z usage: the z that explains each pair best")
    fig.tight_layout()
    return fig
