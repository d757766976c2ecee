"""train(cfg, run_dir) -> metrics: the whole training run, with no Hydra inside."""

import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Dict

import torch
from omegaconf import OmegaConf

from ebm_cli.build import build_data, build_energy, build_inference, build_loss, data_meta, resolve_device
from ebm_cli.checkpoint import rng_state, save_checkpoint
from ebm_cli.console import TrainingProgress, get_console, metrics_table
from ebm_cli.errors import UserError
from ebm_cli.figures import render_figures
from ebm_cli.evaluate import multi_output_metrics
from ebm_cli.schedules import build_schedule
from ebm_cli.tb import TBLogger
from ebm_cli.validate import validate

log = logging.getLogger("ebm_cli")

DIVERGED_EXIT_CODE = 3


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def evaluate_model(energy, inference, data, eps: float, device) -> Dict[str, Any]:
    """Run inference on the held-out x and score the candidates against the valid sets."""
    energy.eval()
    start = time.perf_counter()
    cands = inference(energy, data.x_test.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    metrics = multi_output_metrics(cands.y.cpu(), cands.mask.cpu(), data.valid, data.valid_mask, eps)
    metrics["infer_time_s"] = seconds
    metrics["energy_evals"] = float(cands.evaluations)
    return {"metrics": metrics, "candidates": cands}


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Atomic: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def hparams_of(cfg) -> Dict[str, Any]:
    """Flat scalar hyper-parameters for TensorBoard's HParams tab."""
    flat = {}
    for group in ("dataset", "energy", "inference", "beta", "loss", "trainer"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if isinstance(value, (bool, int, float, str)):
                flat[f"{group}.{key}"] = value
            elif value is not None:
                flat[f"{group}.{key}"] = str(value)
    flat["seed"] = cfg.seed
    return flat


def train(cfg, run_dir: Path) -> Dict[str, float]:
    """Train the configured energy on the configured data; evaluate; log; checkpoint.

    Writes into run_dir: tb/, checkpoints/last.pt (+ previous.pt), figures/, metrics.json.
    """
    validate(cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.trainer.device)
    seed_everything(cfg.seed)
    data = build_data(cfg)
    meta = data_meta(data)
    energy = build_energy(cfg.energy, meta).to(device)
    inference = build_inference(cfg.inference, cfg.seed)
    inference.check(energy)  # before training, not after
    loss_fn = build_loss(cfg.loss, inference, data, device)
    beta = build_schedule(cfg.beta)
    t = cfg.trainer
    opt = torch.optim.Adam(energy.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    log.info("run folder %s | data %s: %d train rows, %d test x | device %s",
             run_dir, data.source, len(x_train), len(data.x_test), device)

    tb = TBLogger(run_dir / "tb" if cfg.logger.tensorboard else None)
    tb.text("config", "```\n" + config_yaml + "```")

    def checkpoint(step: int) -> None:
        save_checkpoint(run_dir / "checkpoints", {
            "model": energy.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "rng": rng_state(), "config": config_yaml, "meta": meta,
        })

    def landscape(step: int, final: bool = False, cands=None) -> Dict[str, Any]:
        figs = render_figures(energy, data, cfg.logger, device, candidates=cands if final else None)
        for name, fig in figs.items():
            tb.figure(f"landscape/{name}", fig, step)
        return figs

    start_time = time.perf_counter()
    clip = t.grad_clip if t.grad_clip is not None else float("inf")
    energy.train()
    with TrainingProgress(t.steps, enabled=cfg.logger.progress, log_every=t.log_every) as progress:
        for step in range(t.steps):
            b = beta(step)
            idx = torch.randint(0, len(x_train), (t.batch_size,), device=device)
            loss, stats = loss_fn(energy, x_train[idx], y_train[idx], b, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(energy.parameters(), clip)
            opt.step()
            done = step + 1
            synced = None
            # Reading values back from the device stalls it, so only every log_every steps.
            if done % t.log_every == 0 or done == t.steps:
                synced = {"loss": loss.item(), "grad_norm": grad_norm.item(), "beta": b,
                          **{k: v.item() for k, v in stats.items()}}
                if not all(math.isfinite(v) for v in synced.values()):
                    raise UserError(f"training diverged at step {done}: {synced}", DIVERGED_EXIT_CODE)
                tb.scalars(synced, done, "train/")
            progress.update(done, synced["loss"] if synced else None)
            if cfg.logger.landscape_every and done % cfg.logger.landscape_every == 0 and done != t.steps:
                landscape(done)
                energy.train()
            if t.ckpt_every and done % t.ckpt_every == 0 and done != t.steps:
                checkpoint(done)
    train_seconds = time.perf_counter() - start_time
    checkpoint(t.steps)

    result = evaluate_model(energy, inference, data, cfg.dataset.eps, device)
    metrics = {**result["metrics"], "train_time_s": train_seconds}
    figs = landscape(t.steps, final=True, cands=result["candidates"])
    figures_dir = run_dir / "figures"
    figures_dir.mkdir(exist_ok=True)
    for name, fig in figs.items():
        fig.savefig(figures_dir / f"{name}.png")
    tb.hparams(hparams_of(cfg), {f"metrics/{k}": v for k, v in metrics.items()}, t.steps)
    tb.close()
    write_json(run_dir / "metrics.json", {"status": "completed", "task": "train", "step": t.steps, "metrics": metrics})
    get_console().print(metrics_table(f"{cfg.energy.name} on {cfg.dataset.name} (inference={cfg.inference.name})", {"test": metrics}))
    return metrics
