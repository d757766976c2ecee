"""Tasks on a finished run: `infer` (candidates for given x) and `landscape` (re-render figures)."""

import logging
from pathlib import Path
from typing import Any, Dict, List

import torch
from omegaconf import OmegaConf

from ebm_cli.build import build_data, build_energy, build_inference, resolve_device
from ebm_cli.checkpoint import find_checkpoint, load_checkpoint, restore
from ebm_cli.console import get_console, simple_table
from ebm_cli.figures import render_figures, save_figures
from ebm_cli.validate import validate

log = logging.getLogger("ebm_cli")


def load_run(run_dir: Path, device):
    """The trained energy of a finished run and that run's own config."""
    path = find_checkpoint(run_dir)
    state = load_checkpoint(path, map_location=str(device))
    run_cfg = OmegaConf.create(state["config"])
    energy = build_energy(run_cfg.energy, state["meta"])
    restore(path, state, energy)
    return energy.to(device).eval(), run_cfg, state


def infer(cfg) -> List[Dict[str, Any]]:
    """Candidates and energies for cfg.x, using the run's model and this command's inference."""
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    energy, run_cfg, state = load_run(Path(cfg.run_dir), device)
    inference = build_inference(cfg.inference, cfg.seed)
    inference.check(energy)
    x = torch.tensor(list(cfg.x), dtype=torch.float32, device=device)[:, None]
    cands = inference(energy, x)
    rows, results = [], []
    for i, xv in enumerate(cfg.x):
        found = [(float(y), float(e)) for y, e, m in zip(cands.y[i, :, 0], cands.energy[i], cands.mask[i]) if m]
        results.append({"x": float(xv), "candidates": [{"y": y, "energy": e} for y, e in found]})
        for rank, (y, e) in enumerate(found, start=1):
            rows.append((f"{xv:g}" if rank == 1 else "", rank, y, e))
    title = f"{run_cfg.energy.name} from {cfg.run_dir} (step {state['step']}), inference={cfg.inference.name}"
    get_console().print(simple_table(title, ["x", "rank", "y", "energy F(x, y)"], rows))
    return results


def landscape(cfg) -> List[Path]:
    """Re-render the run's figures from its checkpoint into <run_dir>/figures/."""
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    run_dir = Path(cfg.run_dir)
    energy, run_cfg, state = load_run(run_dir, device)
    data = build_data(run_cfg)
    inference = build_inference(cfg.inference, cfg.seed)
    inference.check(energy)
    cands = inference(energy, data.x_test.to(device))
    figs = render_figures(energy, data, cfg.logger, device, candidates=cands)
    paths = save_figures(figs, run_dir / "figures")
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
