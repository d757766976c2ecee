"""Tasks on a finished run: `infer` (candidates for given x) and `landscape` (re-render figures)."""

import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
from omegaconf import OmegaConf

from ebm_cli.build import baseline_config, build_data, build_energy, build_inference, resolve_device
from ebm_cli.data import data_kind
from ebm_cli.checkpoint import find_checkpoint, load_checkpoint, restore
from ebm_cli.console import get_console, simple_table
from ebm_cli.errors import UserError
from ebm_cli.figures import render_figures, render_texts, save_figures, save_texts
from ebm_cli.validate import validate, validate_inference

log = logging.getLogger("ebm_cli")


def load_run(run_dir: Path, device):
    """The trained energy of a finished run and that run's own config."""
    path = find_checkpoint(run_dir)
    state = load_checkpoint(path, map_location=str(device))
    run_cfg = OmegaConf.create(state["config"])
    energy = build_energy(run_cfg.energy, state["meta"])
    restore(path, state, energy)
    return energy.to(device).eval(), run_cfg, state


def load_baseline(run_cfg, state, device):
    """The MSE baseline trained next to the energy (trainer.baseline=true), or None."""
    if "baseline" not in state:
        return None
    model = build_energy(baseline_config(run_cfg.energy, run_cfg.dataset), state["meta"])
    model.load_state_dict(state["baseline"]["model"])
    return model.to(device).eval()


def _inference_for(cfg, run_cfg, overrides: Sequence[str]):
    """The inference method the command line names (inference=...) if it is not the run's, else
    the run's own, with the command line's inference.<key>=... applied to it (so
    `inference=z_sweep inference.min_share=0.1` on a z_sweep run keeps that run's k)."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    if "inference" in keys and cfg.inference.name != run_cfg.inference.name:
        return cfg.inference  # another method: its own defaults (validated with the rest of cfg)
    chosen = run_cfg.inference.copy()  # the run's method and settings, with the named keys changed
    for key in keys:
        if key.startswith("inference.") and key[len("inference."):] in chosen:
            chosen[key[len("inference."):]] = cfg.inference[key[len("inference."):]]
    validate_inference(chosen)
    return chosen


def infer(cfg, overrides: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """Candidates, energies (and z) for cfg.x, using the run's model and its inference method
    (see _inference_for for how the command line's overrides change it)."""
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    energy, run_cfg, state = load_run(Path(cfg.run_dir), device)
    if data_kind(run_cfg.dataset) != "curves":
        raise UserError(f"task=infer takes curve inputs x, and {cfg.run_dir} was trained on dataset={run_cfg.dataset.name}: "
                        "its predictions are drawn in figures/ (task=landscape re-draws them)")
    inference_cfg = _inference_for(cfg, run_cfg, overrides)
    inference = build_inference(inference_cfg, cfg.seed)
    inference.check(energy)
    x = torch.tensor(list(cfg.x), dtype=torch.float32, device=device)[:, None]
    cands = inference(energy, x)
    latent = cands.z is not None
    rows, results = [], []
    for i, xv in enumerate(cfg.x):
        found = []
        for j in range(cands.y.shape[1]):
            if cands.mask[i, j]:
                item = {"y": float(cands.y[i, j, 0]), "energy": float(cands.energy[i, j])}
                if latent:
                    item["z"] = [round(float(v), 4) for v in cands.z[i, j].flatten()]
                found.append(item)
        results.append({"x": float(xv), "candidates": found})
        for rank, item in enumerate(found, start=1):
            z_cell = [", ".join(f"{v:g}" for v in item["z"])] if latent else []
            rows.append((f"{xv:g}" if rank == 1 else "", rank, item["y"], *z_cell, item["energy"]))
    title = f"{run_cfg.energy.name} from {cfg.run_dir} (step {state['step']}), inference={inference_cfg.name}"
    columns = ["x", "rank", "y", *(["z"] if latent else []), "energy F(x, y)"]
    get_console().print(simple_table(title, columns, rows))
    return results


def landscape(cfg, overrides: Sequence[str] = ()) -> List[Path]:
    """Re-render the run's figures from its checkpoint into <run_dir>/figures/."""
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    run_dir = Path(cfg.run_dir)
    energy, run_cfg, state = load_run(run_dir, device)
    data = build_data(run_cfg)
    inference = build_inference(_inference_for(cfg, run_cfg, overrides), cfg.seed)
    inference.check(energy)
    cands = inference(energy, data.x_test.to(device))
    figs = render_figures(energy, data, run_cfg.logger, device, candidates=cands,  # drawn as the run drew them
                          baseline=load_baseline(run_cfg, state, device))
    paths = save_figures(figs, run_dir / "figures") + save_texts(render_texts(energy, data, run_cfg.logger, device),
                                                                  run_dir / "figures")
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
