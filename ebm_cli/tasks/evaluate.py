"""Evaluation on the held-out inputs: inference, then the data kind's own metrics."""

import time
from typing import Any, Dict

import torch

from ebm_cli.core.energy import LatentEnergy
from ebm_cli.core.inference import concat
from ebm_cli.inference.z_sweep import predicted
from ebm_cli.plots.latent import latent_usage, usage_metrics

CHUNK = 128  # held-out inputs searched at once: thousands of 64 x 64 frames at once would need GBs


def evaluate_model(energy, inference, data, device) -> Dict[str, Any]:
    """Run inference on the held-out x (CHUNK inputs at a time) and score the candidates against the
    valid sets: {"metrics": {...}, "candidates": Candidates}."""
    energy.eval()
    chunks = range(0, len(data.x_test), CHUNK)
    start = time.perf_counter()
    cands = concat([inference(energy, data.x_test[i : i + CHUNK].to(device)) for i in chunks])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    metrics = data.metrics(cands.y, cands.mask)
    if isinstance(energy, LatentEnergy):
        shares = latent_usage(energy, data.x_test.to(device), data.valid.to(device), data.valid_mask.to(device))
        metrics.update(usage_metrics(shares))
    metrics.update({k: cands.stats[k] for k in getattr(inference, "reports", ()) if k in cands.stats})
    metrics["infer_time_s"] = seconds
    metrics["energy_evals"] = float(cands.evaluations)
    return {"metrics": metrics, "candidates": cands}


def evaluate_baseline(model, data, device) -> Dict[str, float]:
    """The MSE baseline's one prediction per held-out x, scored like the model: baseline_* metrics."""
    model.eval()
    cands = concat([predicted(model, data.x_test[i : i + CHUNK].to(device), 1, data.y_space)
                    for i in range(0, len(data.x_test), CHUNK)])
    metrics = data.metrics(cands.y, cands.mask)
    return {f"baseline_{k}": v for k, v in metrics.items() if k != "candidates_per_x"}
