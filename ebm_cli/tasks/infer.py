"""Tasks on a finished run: `infer` (candidates for given x) and `landscape` (its figures, re-drawn)."""

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from omegaconf import OmegaConf

from ebm_cli.build import (build_baseline, build_dataset, build_energy, build_inference, get_class, materialise,
                           resolve_device)
from ebm_cli.core.dataset import Dataset
from ebm_cli.core.inference import Inference
from ebm_cli.errors import UserError
from ebm_cli.plots.figures import save_figures, save_texts
from ebm_cli.runtime.checkpoint import find_checkpoint, load_checkpoint, restore
from ebm_cli.runtime.compat import fill_added_meta, fill_added_settings, is_old
from ebm_cli.runtime.console import get_console, print_results, simple_table
from ebm_cli.runtime.disk import writing
from ebm_cli.runtime.run_folder import write_json
from ebm_cli.runtime.trust import check_trusted
from ebm_cli.validate import validate

log = logging.getLogger("ebm_cli")

TRAINING_ONLY = ("optimizer", "scheduler", "callbacks")  # config groups that a training run alone builds


def load_run(run_dir: Path, device, trusted: Iterable[str] = ()):
    """The trained energy of a finished run, that run's own config, and its checkpoint. A checkpoint
    whose config or data arguments cannot rebuild the energy is named with the reason; one whose
    config names a class that is neither ebm_cli's nor in `trusted` is refused (runtime/trust.py)."""
    path = find_checkpoint(run_dir)
    state = load_checkpoint(path, map_location="cpu")  # read on the host; the energy is moved below
    try:
        run_cfg = OmegaConf.create(state["config"])
    except Exception as exc:
        raise UserError(f"checkpoint {path}: its stored config is not readable ({type(exc).__name__}: {exc})") from None
    # before any class is built; what only training builds (its optimizer, schedule, callbacks) is never
    # built from a stored config, so it needs no trust
    built = OmegaConf.masked_copy(run_cfg, [k for k in run_cfg if k not in TRAINING_ONLY])
    check_trusted([built, state.get("meta")], trusted, f"checkpoint {path}")
    if is_old(state):  # saved by an earlier version: rebuilt as it was trained and evaluated
        fill_added_settings(run_cfg)
        fill_added_meta(state["meta"], run_cfg)
    try:
        energy = build_energy(run_cfg.energy, state["meta"])
    except UserError as err:
        raise UserError(f"checkpoint {path}: cannot rebuild its energy ({err})") from None
    except Exception as exc:  # a hand-edited config or meta
        raise UserError(f"checkpoint {path}: cannot rebuild its energy ({type(exc).__name__}: {exc})") from None
    restore(path, state, energy)  # non-finite weights refused: served, they would give NaN energies and an empty table
    return energy.to(device).eval(), run_cfg, state


def load_baseline(run_cfg, state, device):
    """The MSE baseline trained next to the energy (trainer.baseline=true), or None."""
    if "baseline" not in state:
        return None
    model = build_baseline(get_class(run_cfg.dataset._target_), run_cfg.energy, state["meta"])
    model.load_state_dict(state["baseline"]["model"])
    return model.to(device).eval()


def inference_node(cfg, run_cfg, overrides: Sequence[str]):
    """The inference method the command line names (inference=...) if it is not the run's, else
    the run's own, with the command line's inference.<key>=... applied to it (so
    `inference=z_sweep inference.min_share=0.1` on a z_sweep run keeps that run's k)."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    if "inference" in keys and cfg.inference._target_ != run_cfg.inference._target_:
        return cfg.inference  # another method: its own defaults
    chosen = run_cfg.inference.copy()  # the run's method and settings, with the named keys changed
    for key in keys:
        if key.startswith("inference.") and key[len("inference."):] in chosen:
            chosen[key[len("inference."):]] = cfg.inference[key[len("inference."):]]
    return chosen


@dataclass
class OpenedRun:
    """A finished run, ready for a task: its energy, config, checkpoint, inference method, and either
    its data (landscape, compare) or the command line's inputs (infer)."""

    energy: torch.nn.Module
    run_cfg: Any
    state: Dict[str, Any]
    inference: Inference
    data_cls: type
    device: torch.device
    data: Optional[Dataset] = None
    x: Optional[torch.Tensor] = None


def open_run(cfg, overrides: Sequence[str] = (), with_data: bool = False, trusted: Iterable[str] = ()) -> OpenedRun:
    """Load cfg.run_dir's energy and build the inference method (and the data, or parse cfg.x),
    every check passed: the same steps for the pre-run check and the tasks."""
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    energy, run_cfg, state = load_run(Path(cfg.run_dir), device, {*trusted, *(cfg.get("trust") or [])})
    meta, data_cls = state["meta"], get_class(run_cfg.dataset._target_)
    data = build_dataset(run_cfg) if with_data else None
    y_space = data.y_space if data is not None else materialise(meta)["y_space"]
    inference = build_inference(inference_node(cfg, run_cfg, overrides), y_space, cfg.seed,
                                outputs=data.outputs_per_input if data is not None else meta.get("outputs_per_input"))
    inference.check(energy)
    x = None
    if cfg.task.name == "infer":
        with torch.device("cpu"):  # parsed on the host (a user's data kind too), then moved
            x = data_cls.parse_inputs(OmegaConf.to_container(cfg.x, resolve=True), meta)
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise UserError(f"x={OmegaConf.to_container(cfg.x, resolve=True)}: inputs must be finite numbers (nan or inf given)")
        x = x.to(device)
    return OpenedRun(energy, run_cfg, state, inference, data_cls, device, data, x)


def infer(cfg, overrides: Sequence[str] = (), trusted: Iterable[str] = (), out_dir: Optional[Path] = None
          ) -> List[Dict[str, Any]]:
    """Candidates, energies (and z) for cfg.x, using the run's model and its inference method
    (see inference_node for how the command line's overrides change it). With out_dir (the
    command's folder) they are also written there: candidates.json and candidates.csv."""
    run = open_run(cfg, overrides, trusted=trusted)
    meta, values = run.state["meta"], OmegaConf.to_container(cfg.x, resolve=True)
    cands = run.inference(run.energy, run.x)
    latent = cands.z is not None
    rows, results = [], []
    for i, xv in enumerate(values):
        found = []
        for j in range(cands.y.shape[1]):
            if cands.mask[i, j]:
                y = cands.y[i, j].cpu()
                item = {"y": y.tolist() if y.numel() > 1 else float(y), "text": run.data_cls.describe(y, meta),
                        "energy": float(cands.energy[i, j])}
                if latent:
                    item["z"] = [round(float(v), 4) for v in cands.z[i, j].flatten()]
                found.append(item)
        results.append({"x": xv, "candidates": found})
        for rank, item in enumerate(found, start=1):
            z_cell = [", ".join(f"{v:g}" for v in item["z"])] if latent else []
            rows.append((str(xv) if rank == 1 else "", rank, item["text"], *z_cell, item["energy"]))
    title = (f"{type(run.energy).__name__} from {cfg.run_dir} (step {run.state['step']}), "
             f"inference={run.inference.name}")
    columns = ["x", "rank", "y", *(["z"] if latent else []), run.inference.score]
    get_console().print(simple_table(title, columns, rows))
    if out_dir is not None:
        write_candidates(Path(out_dir), results, latent)
    return results


def write_candidates(folder: Path, results: List[Dict[str, Any]], latent: bool) -> None:
    """candidates.json (the list infer returns) and candidates.csv (one row per candidate: x, rank, y,
    its text, z, energy), and one line saying where."""
    write_json(folder / "candidates.json", results)
    with writing(folder / "candidates.csv"), open(folder / "candidates.csv", "w", newline="") as out:
        table = csv.writer(out)
        table.writerow(["x", "rank", "y", "text", *(["z"] if latent else []), "energy"])
        for result in results:
            for rank, item in enumerate(result["candidates"], start=1):
                table.writerow([json.dumps(result["x"]), rank, json.dumps(item["y"]), item["text"],
                                *([json.dumps(item["z"])] if latent else []), item["energy"]])
    print_results(folder, ["candidates.json", "candidates.csv"])


def landscape(cfg, out_dir: Path, overrides: Sequence[str] = (), trusted: Iterable[str] = ()) -> List[Path]:
    """Re-draw the run's figures (and texts) from its checkpoint into out_dir/figures/: this
    command's own folder; the finished run is only read."""
    run = open_run(cfg, overrides, with_data=True, trusted=trusted)
    data, energy = run.data, run.energy
    cands = run.inference(energy, data.x_test.to(run.device))
    figs = data.figures(energy, run.run_cfg.logger, run.device, candidates=cands,  # drawn as the run drew them
                        baseline=load_baseline(run.run_cfg, run.state, run.device))
    texts = data.texts(energy, run.run_cfg.logger, run.device)
    if not figs and not texts:
        raise UserError(f"{type(data).__name__} data has no figures or texts to draw")
    folder = Path(out_dir) / "figures"
    paths = save_figures(figs, folder) + save_texts(texts, folder)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    print_results(folder, [p.name for p in paths])
    return paths
