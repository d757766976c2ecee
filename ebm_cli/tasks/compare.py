"""task=compare_inference: every inference method on one trained model, side by side."""

import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Iterable, List

import torch
from omegaconf import OmegaConf

from ebm_cli.build import build_inference
from ebm_cli.errors import UserError
from ebm_cli.runtime.console import get_console, print_results, simple_table
from ebm_cli.runtime.run_folder import write_json
from ebm_cli.tasks.infer import open_run

log = logging.getLogger("ebm_cli")


def packaged_methods() -> Dict[str, Any]:
    """{option: config node} of every inference method shipped in configs/inference/."""
    folder = resources.files("ebm_cli.configs") / "inference"
    return {p.name[:-5]: OmegaConf.create(p.read_text()) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


def compare_inference(cfg, out_dir: Path, trusted: Iterable[str] = ()) -> List[Dict[str, Any]]:
    """Run every packaged method (at its defaults, with the run's k) and the run's own method (with
    its settings) on the held-out x of cfg.run_dir's model; print a table and write
    out_dir/compare_inference.json. A method that cannot serve the energy gets its reason."""
    run = open_run(cfg, with_data=True, trusted=trusted)
    energy, run_cfg, state, data, device = run.energy, run.run_cfg, run.state, run.data, run.device
    x = data.x_test.to(device)
    eps = data.eps
    k = run_cfg.inference.get("k", cfg.inference.k) or run.inference.k  # null: the data's (the run's method has it)
    methods = {name: OmegaConf.merge(node, {"k": k}) for name, node in packaged_methods().items()}
    own = [name for name, node in methods.items() if node._target_ == run_cfg.inference._target_]
    methods.update({own[0] if own else "run's own": run_cfg.inference})  # its own settings
    results = []
    for name, node in methods.items():
        inference = build_inference(node, data.y_space, cfg.seed, path=f"inference={name}", outputs=data.outputs_per_input)
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
        metrics = data.metrics(cands.y, cands.mask)
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
    title = (f"inference methods on {type(energy).__name__} from {cfg.run_dir} (step {state['step']}, "
             f"{len(x)} held-out x, k={k}, {device.type})")
    get_console().print(simple_table(title, ["method", f"coverage@{tag}", f"precision@{tag}", "chamfer",
                                             "mean F of candidates", "energy evals", "wall ms"], rows))
    write_json(Path(out_dir) / "compare_inference.json", {"run_dir": str(cfg.run_dir), "k": k, "results": results})
    print_results(out_dir, ["compare_inference.json"])
    return results
