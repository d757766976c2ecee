"""The landscape figures of an energy on data with a 1-D x and a 1-D y, and saving figures and texts."""

import math
from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")  # no display needed; figures go to TensorBoard and PNG files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ebm_cli.core.energy import LatentEnergy  # noqa: E402
from ebm_cli.core.inference import Candidates  # noqa: E402
from ebm_cli.core.spaces import DiscreteZ  # noqa: E402
from ebm_cli.plots import latent as lv  # noqa: E402
from ebm_cli.plots.landscape import energy_grid, gibbs_slices, plot_landscape, plot_slices  # noqa: E402

MAX_POINTS_DRAWN = 1500


def landscape_figures(data, energy, logger, device, candidates: Optional[Candidates] = None) -> Dict[str, object]:
    """{"energy": F(x, y) heat map with the data (and the candidates), "slices": F and P_beta},
    and for a latent energy also "latent_energy", "free_energy_betas", "ribbon", "latent_usage"."""
    was_training = energy.training
    energy.eval()
    space, (x_low, x_high) = data.y_space, data.x_range
    xs, ys, f = energy_grid(energy, space, x_low, x_high, logger.resolution, device)
    step = max(1, len(data.x_train) // MAX_POINTS_DRAWN)
    points = torch.cat([data.x_train, data.y_train], dim=1)[::step]
    cand_points = None
    if candidates is not None:
        k, mask = candidates.y.shape[1], candidates.mask.cpu()
        x_rep = data.x_test.expand(-1, k)[mask]
        cand_points = torch.stack([x_rep, candidates.y.cpu()[..., 0][mask]], dim=1)
    figs = {"energy": plot_landscape(xs, ys, f, points=points, candidates=cand_points)}
    x0 = slice_points(logger, data)
    ys_s, f_s, p_s = gibbs_slices(energy, space, x0, logger.slice_betas, device=device)
    figs["slices"] = plot_slices(ys_s, f_s, p_s, x0, logger.slice_betas)
    if isinstance(energy, LatentEnergy):
        figs.update(latent_figures(data, energy, logger, device, points))
    energy.train(was_training)
    return figs


def slice_points(logger, data) -> List[float]:
    """The x values of the slice panels: `logger.slice_x`, or by default a quarter, half and three
    quarters into the data's x range (a user's x in [0, 4] gets its slices inside its data)."""
    if logger.slice_x is not None:
        return list(logger.slice_x)
    x_low, x_high = data.x_range
    if x_high == x_low:
        return [x_low]
    return [x_low + share * (x_high - x_low) for share in (0.25, 0.5, 0.75)]  # titles print them with :g


def latent_figures(data, energy, logger, device, points) -> Dict[str, object]:
    """E(x0, y, z) over (y, z); F_beta(x, y) for several beta (and F_inf); the ribbon y(z); z usage."""
    x0, space = slice_points(logger, data), data.y_space
    figs = {}
    ys, z, e = lv.joint_energy(energy, space, x0, logger.resolution, device)
    z_label = lv.z_label(energy)
    figs["latent_energy"] = lv.plot_joint(ys, z, e, x0, z_label)
    betas = [*logger.latent_betas, math.inf]
    xs, ys_b, maps = lv.beta_landscapes(energy, space, *data.x_range, betas, logger.resolution, device)
    figs["free_energy_betas"] = lv.plot_beta_landscapes(xs, ys_b, maps, betas, points=points)
    z_r, y_r = lv.ribbon(energy, space, x0, logger.resolution, device)
    nearest = [int((data.x_test[:, 0] - v).abs().argmin()) for v in x0]
    valid = [data.valid[i][data.valid_mask[i]].flatten() for i in nearest]
    figs["ribbon"] = lv.plot_ribbon(z_r, y_r, x0, z_label, valid=valid)
    shares = lv.latent_usage(energy, data.x_test.to(device), data.valid.to(device), data.valid_mask.to(device))
    figs["latent_usage"] = lv.plot_usage(shares, isinstance(energy.z_space, DiscreteZ))
    return figs


def render(fig) -> np.ndarray:
    """The figure's pixels, (H, W, 3) uint8, drawn once (TensorBoard and the PNG file share them);
    the figure is closed. An array passes through unchanged."""
    if isinstance(fig, np.ndarray):
        return fig
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return image


def save_figures(figs: Dict[str, object], folder: Path) -> List[Path]:
    """folder/<name>.png for each figure (a matplotlib figure or its rendered pixels); the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        paths.append(folder / f"{name}.png")
        plt.imsave(paths[-1], render(fig))
    return paths


def save_texts(texts: Dict[str, str], folder: Path) -> List[Path]:
    """folder/<name>.md for each text summary; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        paths.append(folder / f"{name}.md")
        paths[-1].write_text(text + "\n", encoding="utf-8")
    return paths
