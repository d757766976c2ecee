"""The run's figures, drawn from an energy and its data (for TensorBoard and figures/*.png)."""

import math
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ebm_cli import latent_view as lv
from ebm_cli.data.translation import TranslationData
from ebm_cli.data.video import VideoData
from ebm_cli.free_energy import DiscreteZ
from ebm_cli.inference.common import Candidates
from ebm_cli.landscape import energy_grid, gibbs_slices, plot_landscape, plot_slices
from ebm_cli.translation_view import translation_texts
from ebm_cli.video_view import video_figures

MAX_POINTS_DRAWN = 1500


def render_figures(energy, data, logger_cfg, device, candidates: Optional[Candidates] = None,
                   baseline=None) -> Dict[str, object]:
    """{"energy": F(x, y) heat map with the data (and the candidates), "slices": F and P_beta},
    and for a latent energy also "latent_energy", "free_energy_betas", "ribbon", "latent_usage".
    Frames (video) get the image grid instead (video_view), with the baseline's prediction."""
    if isinstance(data, VideoData):
        return video_figures(energy, data, logger_cfg, device, baseline)
    if isinstance(data, TranslationData):  # sequences: TensorBoard text instead (render_texts)
        return {}
    was_training = energy.training
    energy.eval()
    xs, ys, f = energy_grid(energy, data.x_low, data.x_high, logger_cfg.resolution, device)
    step = max(1, len(data.x_train) // MAX_POINTS_DRAWN)
    points = torch.cat([data.x_train, data.y_train], dim=1)[::step]
    cand_points = None
    if candidates is not None:
        k = candidates.y.shape[1]
        x_rep = data.x_test.expand(-1, k)[candidates.mask.cpu()]
        cand_points = torch.stack([x_rep, candidates.y.cpu()[..., 0][candidates.mask.cpu()]], dim=1)
    figs = {"energy": plot_landscape(xs, ys, f, points=points, candidates=cand_points)}
    ys_s, f_s, p_s = gibbs_slices(energy, logger_cfg.slice_x, logger_cfg.slice_betas, device=device)
    figs["slices"] = plot_slices(ys_s, f_s, p_s, logger_cfg.slice_x, logger_cfg.slice_betas)
    if hasattr(energy, "z_space"):
        figs.update(latent_figures(energy, data, logger_cfg, device, points))
    energy.train(was_training)
    return figs


def render_texts(energy, data, logger_cfg, device) -> Dict[str, str]:
    """TensorBoard text of the run: {"translations": ...} for translation pairs, else nothing."""
    return translation_texts(energy, data, logger_cfg, device) if isinstance(data, TranslationData) else {}


def latent_figures(energy, data, logger_cfg, device, points) -> Dict[str, object]:
    """E(x0, y, z) over (y, z); F_beta(x, y) for several beta (and F_inf); the ribbon y(z); z usage."""
    x0 = list(logger_cfg.slice_x)
    figs = {}
    ys, z, e = lv.joint_energy(energy, x0, logger_cfg.resolution, device)
    _, z_label = lv.z_axis(energy, energy.points)
    figs["latent_energy"] = lv.plot_joint(ys, z, e, x0, z_label)
    betas = [*logger_cfg.latent_betas, math.inf]
    xs, ys_b, maps = lv.beta_landscapes(energy, data.x_low, data.x_high, betas, logger_cfg.resolution, device)
    figs["free_energy_betas"] = lv.plot_beta_landscapes(xs, ys_b, maps, betas, points=points)
    z_r, y_r = lv.ribbon(energy, x0, logger_cfg.resolution, device)
    nearest = [int((data.x_test[:, 0] - v).abs().argmin()) for v in x0]
    valid = [data.valid[i][data.valid_mask[i]].flatten() for i in nearest]
    figs["ribbon"] = lv.plot_ribbon(z_r, y_r, x0, z_label, valid=valid)
    shares = lv.latent_usage(energy, data.x_test.to(device), data.valid.to(device), data.valid_mask.to(device))
    figs["latent_usage"] = lv.plot_usage(shares, isinstance(energy.z_space, DiscreteZ))
    return figs


def save_figures(figs: Dict[str, object], folder: Path) -> List[Path]:
    """folder/<name>.png for each figure; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        paths.append(folder / f"{name}.png")
        fig.savefig(paths[-1])
    return paths


def save_texts(texts: Dict[str, str], folder: Path) -> List[Path]:
    """folder/<name>.md for each text summary; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        paths.append(folder / f"{name}.md")
        paths[-1].write_text(text + "\n", encoding="utf-8")
    return paths
