"""task=compare_inference: every inference method on one trained model, side by side."""

import logging
import time
from pathlib import Path
from typing import Any, Dict, List

import torch
from omegaconf import OmegaConf

from ebm_cli import schema
from ebm_cli.build import build_data, build_inference, resolve_device
from ebm_cli.console import get_console, simple_table
from ebm_cli.errors import UserError
from ebm_cli.evaluate import score_candidates
from ebm_cli.predict import load_run
from ebm_cli.train import write_json
from ebm_cli.validate import validate

log = logging.getLogger("ebm_cli")

# Each method at its documented defaults (the schema's), with the run's k.
METHODS = {
    "grid": schema.GridInferenceConfig,
    "gradient": schema.GradientInferenceConfig,
    "langevin": schema.LangevinInferenceConfig,
    "dfo": schema.DFOInferenceConfig,
    "cem": schema.CEMInferenceConfig,
    "z_sweep": schema.ZSweepInferenceConfig,
    "dp": schema.DPInferenceConfig,
}


def compare_inference(cfg, out_dir: Path) -> List[Dict[str, Any]]:
    """Run every method on the held-out x of cfg.run_dir's model; print a table and write
    out_dir/compare_inference.json. A method that cannot serve the energy gets its reason."""
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    energy, run_cfg, state = load_run(Path(cfg.run_dir), device)
    data = build_data(run_cfg)
    x = data.x_test.to(device)
    eps = run_cfg.dataset.eps
    k = run_cfg.inference.k if OmegaConf.select(run_cfg, "inference.k") is not None else cfg.inference.k
    results = []
    for name, node in METHODS.items():
        method_cfg = OmegaConf.merge(OmegaConf.structured(node), {"k": k})
        if name == run_cfg.inference.name:  # the run's own method with the run's own settings
            method_cfg = run_cfg.inference
        inference = build_inference(method_cfg, cfg.seed)
        try:
            inference.check(energy)
        except UserError as err:
            results.append({"method": name, "applicable": False, "reason": str(err)})
            continue
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        cands = inference(energy, x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        metrics = score_candidates(data, cands.y, cands.mask, eps)
        found = cands.energy[cands.mask]
        results.append({"method": name, "applicable": True, **metrics, "mean_energy": float(found.mean()),
                        "energy_evals": int(cands.evaluations), "wall_ms": 1000 * seconds})
    tag = f"{eps:g}"
    rows = []
    for r in results:
        if r["applicable"]:
            rows.append((r["method"], r[f"coverage@{tag}"], r[f"precision@{tag}"], r["chamfer"], r["mean_energy"],
                         r["energy_evals"], r["wall_ms"]))
        else:  # "inference=dp needs a chain-structured energy ...; use ..." -> "needs a chain-structured energy ..."
            why = r["reason"].split(";")[0].split(" ", 1)[-1]
            rows.append((r["method"], f"not applicable: {why}", "", "", "", "", ""))
    title = (f"inference methods on {run_cfg.energy.name} from {cfg.run_dir} (step {state['step']}, "
             f"{len(x)} held-out x, k={k}, {device.type})")
    get_console().print(simple_table(title, ["method", f"coverage@{tag}", f"precision@{tag}", "chamfer",
                                             "mean F of candidates", "energy evals", "wall ms"], rows))
    write_json(Path(out_dir) / "compare_inference.json", {"run_dir": str(cfg.run_dir), "k": k, "results": results})
    return results
