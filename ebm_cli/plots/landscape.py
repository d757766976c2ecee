"""Energy landscapes: pure tensors in and out, plus matplotlib figures drawn from them."""

import math
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # no display needed; figures go to TensorBoard and PNG files
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from ebm_cli.core.energy import LatentEnergy, pairwise_energy  # noqa: E402


@torch.no_grad()
def energy_grid(energy, space, x_low: float, x_high: float, resolution: int, device=None):
    """F on an (x, y) grid for 1-D x and y in the box `space`: xs (R,), ys (R,), F (R_y, R_x)."""
    xs = torch.linspace(x_low, x_high, resolution, device=device)
    ys = torch.linspace(space.low, space.high, resolution, device=device)
    f = pairwise_energy(energy, xs[:, None], ys.view(1, -1, 1).expand(resolution, -1, 1))  # (R_x, R_y)
    return xs.cpu(), ys.cpu(), f.T.cpu()


@torch.no_grad()
def gibbs_slices(energy, space, x0: Sequence[float], betas: Sequence[float], points: int = 400, device=None):
    """Slices F(x0, y) and P_beta(y | x0) = exp(-beta F) / Z on a y-grid over the box `space`.

    Returns ys (G,), F (n_x0, G), P (n_beta, n_x0, G) as densities (integrate to 1 over y).
    """
    ys = torch.linspace(space.low, space.high, points, device=device)
    x = torch.tensor(list(x0), dtype=torch.float32, device=device)[:, None]
    f = pairwise_energy(energy, x, ys.view(1, -1, 1).expand(len(x0), -1, 1))
    dy = (space.high - space.low) / (points - 1)
    if isinstance(energy, LatentEnergy):  # a latent energy: P_beta ∝ exp(-beta F_beta), F_beta itself depends on beta
        p = []
        for b in betas:
            with energy.at_beta(b):
                f_b = pairwise_energy(energy, x, ys.view(1, -1, 1).expand(len(x0), -1, 1))
            p.append(torch.softmax(-b * f_b, dim=-1) / dy)
        return ys.cpu(), f.cpu(), torch.stack(p).cpu()
    b = torch.tensor(list(betas), dtype=f.dtype, device=device).view(-1, 1, 1)
    p = torch.softmax(-b * f.unsqueeze(0), dim=-1) / dy
    return ys.cpu(), f.cpu(), p.cpu()


DECADES = 3  # the colour scale spans vmax / 10^3 .. vmax: valleys, barriers and walls each get their shades
FLAT = 1e-2  # the top of the scale is at least this: a flat (collapsed) landscape stays one dark colour, not its float noise


def log_norm(vmax: float) -> LogNorm:
    """A log colour scale over DECADES decades below vmax: the energies of interest (a valley's floor,
    the barriers between branches, a few units) are orders of magnitude below the walls at the box's
    corners (hundreds); on a linear scale they would all share the darkest shade."""
    vmax = max(float(vmax), FLAT) if math.isfinite(vmax) else 1.0
    return LogNorm(vmin=vmax * 10.0 ** -DECADES, vmax=vmax)


def finite_max(t: torch.Tensor) -> float:
    """The largest finite value of t (a NaN or inf cell of a diverged energy does not set the scale)."""
    finite = t[torch.isfinite(t)]
    return float(finite.max()) if finite.numel() else 1.0


def shown(rel: torch.Tensor, norm: LogNorm):
    """What a heat map draws: values below the scale at its floor, a NaN or inf cell at its top."""
    return torch.nan_to_num(rel, nan=norm.vmax, posinf=norm.vmax).clamp(min=norm.vmin).numpy()


def draw_landscape(ax, xs, ys, f, points=None, candidates=None, colorbar: bool = True, vmax: Optional[float] = None):
    """Heat map of F(x, y) - min_y F(x, y) on ax (per-x offsets carry no meaning for P(y|x)), on a log
    colour scale (log_norm): the floor of each valley is the darkest shade. Returns the image (for a
    colour bar shared by several panels).

    points: (N, 2) data (x, y) drawn as dots; candidates: (M, 2) inferred (x, y) drawn as crosses;
    vmax: the top of the colour scale (default: this landscape's largest value). A fixed vmax
    compares landscapes.
    """
    rel = f - f.min(dim=0, keepdim=True).values
    norm = log_norm(vmax if vmax is not None else finite_max(rel))
    im = ax.imshow(
        shown(rel, norm), origin="lower", aspect="auto", cmap="viridis", norm=norm,
        extent=[float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])],
    )
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="F(x, y) − min_y F(x, y)  (log scale)")
    if points is not None:
        ax.scatter(points[:, 0], points[:, 1], s=2, c="white", alpha=0.5, linewidths=0, label="training data")
    if candidates is not None:
        ax.scatter(candidates[:, 0], candidates[:, 1], s=14, c="red", marker="x", linewidths=1, label="inferred y̌")
    if points is not None or candidates is not None:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return im


def plot_landscape(xs, ys, f, points=None, candidates=None, title: Optional[str] = None):
    """One landscape figure (see draw_landscape)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=100)
    draw_landscape(ax, xs, ys, f, points=points, candidates=candidates)
    ax.set_title(title or "energy landscape F(x, y)")
    fig.tight_layout()
    return fig


def plot_slices(ys, f, p, x0: Sequence[float], betas: Sequence[float]):
    """Top row: F(x0, y) per x0; bottom row: P_beta(y | x0) for each beta (large beta = peaked)."""
    n = len(x0)
    fig, axes = plt.subplots(2, n, figsize=(2.1 * n + 0.4, 4.0), dpi=100, squeeze=False)  # legible at card size
    for j, xv in enumerate(x0):
        axes[0, j].plot(ys, f[j], color="black")
        # The walls at the box edges are steep: show the wells, not the walls.
        low, top = float(f[j].min()), float(torch.quantile(f[j], 0.6))
        axes[0, j].set_ylim(low - 0.05 * (top - low + 1e-6), top)
        axes[0, j].set_title(f"F(x={xv:g}, y)")
        for i, b in enumerate(betas):
            axes[1, j].plot(ys, p[i, j], label=f"β={b:g}")
        axes[1, j].set_title(f"P_β(y | x={xv:g})")
        axes[1, j].set_xlabel("y")
    axes[1, 0].legend(fontsize=7)
    # fixed margins: tight_layout draws the whole figure once more to measure it (half its cost)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.93, wspace=0.3, hspace=0.45)
    return fig
