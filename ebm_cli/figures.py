"""The run's figures, drawn from an energy and its data (for TensorBoard and figures/*.png)."""

from pathlib import Path
from typing import Dict, List, Optional

import torch

from ebm_cli.inference.common import Candidates
from ebm_cli.landscape import energy_grid, gibbs_slices, plot_landscape, plot_slices

MAX_POINTS_DRAWN = 1500


def render_figures(energy, data, logger_cfg, device, candidates: Optional[Candidates] = None) -> Dict[str, object]:
    """{"energy": F(x, y) heat map with the data (and the candidates), "slices": F and P_beta}."""
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
    energy.train(was_training)
    return figs


def save_figures(figs: Dict[str, object], folder: Path) -> List[Path]:
    """folder/<name>.png for each figure; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        paths.append(folder / f"{name}.png")
        fig.savefig(paths[-1])
    return paths
