"""The video image grid: context frames | valid futures | the prediction of each z | the baseline.

One row per held-out context. Each prediction column is one value of z (for a continuous z, evenly
spaced nodes), captioned with its free energy F(x, g(x, z)): exploring z explores the futures.
"""

from typing import Dict, List, Tuple

import torch

from ebm_cli.core.energy import DecodingEnergy, LatentEnergy, PredictorEnergy, pairwise_energy
from ebm_cli.core.spaces import DiscreteZ
from ebm_cli.plots import latent as lv
from ebm_cli.plots.landscape import plt

MAX_Z_COLUMNS = 6  # a continuous z shows this many evenly spaced nodes


@torch.no_grad()
def prediction_columns(energy, x: torch.Tensor, y_space) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """What the energy predicts for contexts x: (n, C, H, W): frames (n, P, H, W), their energies
    (n, P) and a label per column (z values for a decoding energy, f(x) for a predictor); for other
    energies nothing (no columns)."""
    if isinstance(energy, PredictorEnergy):
        y = y_space.project(energy.predict(x)).unsqueeze(1)
        return y, energy(x, y[:, 0])[:, None], ["f(x)"]
    if not isinstance(energy, DecodingEnergy):
        return x.new_zeros(x.shape[0], 0, *y_space.shape), x.new_zeros(x.shape[0], 0), []
    z, _ = energy.nodes(x.device)
    if len(z) > MAX_Z_COLUMNS:
        z = z[torch.linspace(0, len(z) - 1, MAX_Z_COLUMNS, device=z.device).round().long()]
    y = y_space.project(energy.decode(x, z))  # (n, P, H, W)
    labels = [f"z={int(v[0])}" if isinstance(energy.z_space, DiscreteZ) else
              "z=(" + ",".join(f"{float(c):.2g}" for c in v) + ")" for v in z]
    return y, pairwise_energy(energy, x, y), labels


@torch.no_grad()
def video_grid(energy, data, rows: int, device, baseline=None):
    """The image grid as a matplotlib figure, for the first `rows` held-out contexts."""
    n = min(rows, len(data.x_test))
    x = data.x_test[:n].to(device)
    pred, energies, labels = prediction_columns(energy, x, data.y_space)
    # (title, frames (n, H, W), which rows have one (None = all), energies (n,) or None)
    columns = [(f"context {t - x.shape[1] + 1}" if t < x.shape[1] - 1 else "context (last)", x[:, t].cpu(), None, None)
               for t in range(x.shape[1])]
    for j in range(data.valid.shape[1]):
        columns.append((f"valid {j + 1}", data.valid[:n, j], data.valid_mask[:n, j], None))
    for j, label in enumerate(labels):
        columns.append((label, pred[:, j].cpu(), None, energies[:, j].cpu()))
    if baseline is not None:
        columns.append(("baseline", data.y_space.project(baseline.predict(x)).cpu(), None, None))
    fig, axes = plt.subplots(n, len(columns), figsize=(1.05 * len(columns), 1.15 * n + 0.3), dpi=100, squeeze=False)
    for j, (title, frames, present, energy_of) in enumerate(columns):
        for i in range(n):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if present is not None and not present[i]:  # fewer valid futures here than K
                ax.axis("off")
                continue
            ax.imshow(frames[i].numpy(), cmap="gray", vmin=data.y_space.low, vmax=data.y_space.high, interpolation="nearest")
            if energy_of is not None:
                ax.set_xlabel(f"F={float(energy_of[i]):.3g}", fontsize=6, labelpad=1)
            if i == 0:
                ax.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    return fig


def video_figures(energy, data, logger_cfg, device, baseline=None) -> Dict[str, object]:
    """{"video_grid": the image grid} and, for a latent energy, {"latent_usage": which z explains
    each held-out (context, future) pair best}."""
    was_training = energy.training
    energy.eval()
    figs = {"video_grid": video_grid(energy, data, logger_cfg.video_examples, device, baseline)}
    if isinstance(energy, LatentEnergy):
        shares = lv.latent_usage(energy, data.x_test.to(device), data.valid.to(device), data.valid_mask.to(device))
        figs["latent_usage"] = lv.plot_usage(shares, isinstance(energy.z_space, DiscreteZ))
    energy.train(was_training)
    return figs
