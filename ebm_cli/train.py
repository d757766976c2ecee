"""train(cfg, run_dir) -> metrics: the whole training run, with no Hydra inside."""

import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from omegaconf import OmegaConf

from ebm_cli.baseline import Baseline
from ebm_cli.build import BASELINES, build_data, build_energy, build_inference, build_loss, data_meta, resolve_device
from ebm_cli.checkpoint import load_latest, remove_stale_temporaries, restore, rng_state, save_checkpoint, set_rng_state
from ebm_cli.console import TrainingProgress, get_console, metrics_table
from ebm_cli.errors import UserError
from ebm_cli.figures import render_figures, render_texts, save_figures, save_texts
from ebm_cli.latent_view import latent_usage, usage_metrics
from ebm_cli.evaluate import score_candidates
from ebm_cli.inference.z_sweep import ZSweepInference
from ebm_cli.schedules import build_schedule
from ebm_cli.signals import Preempted, StopSignals
from ebm_cli.tb import TBLogger
from ebm_cli.validate import validate

log = logging.getLogger("ebm_cli")

DIVERGED_EXIT_CODE = 3


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """One seed for python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic results (read when CUDA starts).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def evaluate_model(energy, inference, data, eps: float, device) -> Dict[str, Any]:
    """Run inference on the held-out x and score the candidates against the valid sets."""
    energy.eval()
    start = time.perf_counter()
    cands = inference(energy, data.x_test.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    metrics = score_candidates(data, cands.y, cands.mask, eps)
    if hasattr(energy, "z_space") or hasattr(energy, "mode_costs"):
        shares = latent_usage(energy, data.x_test.to(device), data.valid.to(device), data.valid_mask.to(device))
        metrics.update(usage_metrics(shares))
    metrics["infer_time_s"] = seconds
    metrics["energy_evals"] = float(cands.evaluations)
    return {"metrics": metrics, "candidates": cands}


def evaluate_baseline(baseline: Baseline, data, eps: float, device) -> Dict[str, float]:
    """The MSE baseline's one prediction per held-out x, scored like the model: baseline_* metrics."""
    baseline.model.eval()
    cands = ZSweepInference.predicted(baseline.model, data.x_test.to(device), 1)
    metrics = score_candidates(data, cands.y, cands.mask, eps)
    return {f"baseline_{k}": v for k, v in metrics.items() if k != "candidates_per_x"}


def learning_rate(t, step: int) -> float:
    """trainer.lr, or its cosine decay from lr to lr_min over trainer.steps."""
    if t.lr_schedule == "cosine":
        return t.lr_min + 0.5 * (t.lr - t.lr_min) * (1 + math.cos(math.pi * step / max(t.steps, 1)))
    return t.lr


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """Atomic: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp, path)


def hparams_of(cfg) -> Dict[str, Any]:
    """Flat scalar hyper-parameters for TensorBoard's HParams tab."""
    flat = {}

    def add(prefix: str, node) -> None:
        for key, value in node.items():
            if isinstance(value, dict):  # nested groups (energy.z.k) become dotted names
                add(f"{prefix}.{key}", value)
            elif isinstance(value, (bool, int, float, str)):
                flat[f"{prefix}.{key}"] = value
            elif value is not None:
                flat[f"{prefix}.{key}"] = str(value)

    for group in ("dataset", "energy", "inference", "beta", "loss", "trainer"):
        add(group, OmegaConf.to_container(cfg[group], resolve=True))
    flat["seed"] = cfg.seed
    return flat


def train(cfg, run_dir: Path) -> Dict[str, float]:
    """Train the configured energy on the configured data; evaluate; log; checkpoint.

    Writes into run_dir: tb/, checkpoints/last.pt (+ previous.pt), figures/, metrics.json, and
    divergence.json if the run diverges. With trainer.resume=auto it continues from the run
    folder's last good checkpoint, so that an interrupted run ends exactly as an uninterrupted one.
    """
    validate(cfg)
    run_dir = Path(run_dir)
    t = cfg.trainer
    device = resolve_device(t.device)
    seed_everything(cfg.seed, t.deterministic)
    data = build_data(cfg)
    meta = data_meta(data)
    energy = build_energy(cfg.energy, meta).to(device)
    inference = build_inference(cfg.inference, cfg.seed)
    inference.check(energy)  # before training, not after
    loss_fn = build_loss(cfg.loss, inference, data, device)
    beta = build_schedule(cfg.beta)
    opt = torch.optim.Adam(energy.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    # (a regressor run is its own baseline: nothing to train next to it)
    with_baseline = t.baseline and cfg.energy.name not in BASELINES.values()
    baseline = Baseline(cfg.energy, cfg.dataset, meta, t.lr, device) if with_baseline else None
    start = resume(run_dir, t.resume, energy, opt, device, loss_fn, baseline)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    log.info("run folder %s | data %s: %d train rows, %d test x | device %s%s", run_dir, data.source,
             len(x_train), len(data.x_test), device, f" | resumed at step {start}" if start else "")

    # purge_step: TensorBoard drops what a killed run logged after its last checkpoint.
    tb = TBLogger(run_dir / "tb" if cfg.logger.tensorboard else None, purge_step=start + 1 if start else None)
    if not start:
        tb.text("config", "```\n" + config_yaml + "```")

    def checkpoint(step: int) -> None:
        save_checkpoint(run_dir / "checkpoints", {
            "model": energy.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "rng": rng_state(), "config": config_yaml, "meta": meta,
            **({"loss": loss_fn.state_dict()} if hasattr(loss_fn, "state_dict") else {}),
            **({"baseline": baseline.state_dict()} if baseline is not None else {}),
        })

    def landscape(step: int, cands=None):
        """Draw and log the figures (and text summaries) of the energy at this step; both."""
        figs = render_figures(energy, data, cfg.logger, device, candidates=cands,
                              baseline=baseline.model if baseline is not None else None)
        for name, fig in figs.items():
            tb.figure(f"landscape/{name}", fig, step)
        texts = render_texts(energy, data, cfg.logger, device)
        for name, text in texts.items():
            tb.text(f"landscape/{name}", text, step)
        return figs, texts

    def stop(status: str, step: int, error: UserError, then=None) -> None:
        tb.close()
        write_json(run_dir / "metrics.json", {"status": status, "task": "train", "step": step, "error": str(error)})
        if then is not None:  # after metrics.json: a launcher's signal handler may end the process
            then()
        raise error

    start_time = time.perf_counter()
    clip = t.grad_clip if t.grad_clip is not None else float("inf")
    last_healthy: Dict[str, float] = {}
    energy.train()
    with StopSignals() as signals, TrainingProgress(t.steps, start, cfg.logger.progress, t.log_every) as progress:
        for step in range(start, t.steps):
            if signals.received:
                checkpoint(step)
                # pass_on: e.g. submitit requeues the job, which continues here with trainer.resume=auto
                stop("preempted", step, Preempted(f"stopped by {signals.received} at step {step}; "
                                                  f"checkpoint saved, continue with trainer.resume=auto"),
                     then=signals.pass_on)
            b = beta(step)
            for group in opt.param_groups:  # a function of the step alone, so resuming needs no state
                group["lr"] = learning_rate(t, step)
            if hasattr(energy, "set_beta"):  # the one place a latent energy's F_beta gets the loss's beta
                energy.set_beta(b)
            idx = torch.randint(0, len(x_train), (t.batch_size,), device=device)
            loss, stats = loss_fn(energy, x_train[idx], y_train[idx], b, step)
            if baseline is not None:  # the same batch, its own optimiser
                stats["baseline_mse"] = baseline.step(x_train[idx], y_train[idx], learning_rate(t, step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(energy.parameters(), clip)
            # One read-back per step, before the update is applied: a diverging step never
            # reaches the weights, and the run stops within the step it diverged in.
            values = dict(zip(["loss", "grad_norm", *stats], torch.stack([loss.detach(), grad_norm, *stats.values()]).tolist()))
            bad = [k for k, v in values.items() if not math.isfinite(v) or abs(v) > t.max_abs]
            if bad:
                report = {"step": step + 1, "values": values, "last_finite": last_healthy, "seed": cfg.seed}
                write_json(run_dir / "divergence.json", report)
                stop("diverged", step, UserError(
                    f"training diverged at step {step + 1}: {', '.join(f'{k}={values[k]:.3g}' for k in bad)} "
                    f"(see divergence.json; the last checkpoint is untouched)", DIVERGED_EXIT_CODE))
            opt.step()
            last_healthy = {**values, "step": step + 1}
            done = step + 1
            if done % t.log_every == 0 or done == t.steps:
                tb.scalars({**values, "beta": b}, done, "train/")
            progress.update(done, values["loss"])
            if cfg.logger.landscape_every and done % cfg.logger.landscape_every == 0 and done != t.steps:
                landscape(done)
                energy.train()
            if t.ckpt_every and done % t.ckpt_every == 0 and done != t.steps:
                checkpoint(done)
        train_seconds = time.perf_counter() - start_time
        if hasattr(energy, "set_beta"):  # evaluate (and save) at the schedule's final beta
            energy.set_beta(beta(t.steps))
        checkpoint(t.steps)

    result = evaluate_model(energy, inference, data, cfg.dataset.eps, device)
    metrics = {**result["metrics"], "train_time_s": train_seconds}
    if baseline is not None:
        metrics.update(evaluate_baseline(baseline, data, cfg.dataset.eps, device))
    figs, texts = landscape(t.steps, cands=result["candidates"])
    save_figures(figs, run_dir / "figures")
    save_texts(texts, run_dir / "figures")
    tb.hparams(hparams_of(cfg), {f"metrics/{k}": v for k, v in metrics.items()}, t.steps)
    tb.close()
    write_json(run_dir / "metrics.json", {"status": "completed", "task": "train", "step": t.steps, "metrics": metrics})
    get_console().print(metrics_table(f"{cfg.energy.name} on {cfg.dataset.name} (inference={cfg.inference.name})", {"test": metrics}))
    return metrics


def check_run_folder(run_dir: Path, mode: str) -> None:
    """Refuse a run folder whose contents a training run would overwrite."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        try:
            status = json.loads(metrics.read_text()).get("status")
        except (ValueError, AttributeError):
            status = None
        if status == "completed":
            raise UserError(f"{run_dir} already holds a finished run; choose another hydra.run.dir")
    folder = run_dir / "checkpoints"
    if mode == "never" and folder.is_dir() and any(folder.glob("*.pt")):
        raise UserError(f"{run_dir} already holds checkpoints of an unfinished run: add trainer.resume=auto "
                        "to continue it, or choose another hydra.run.dir")


def resume(run_dir: Path, mode: str, energy, opt, device, loss_fn=None, baseline=None) -> int:
    """Restore model, optimiser and RNG states from run_dir's last good checkpoint; the step.

    mode=never refuses a folder that already holds checkpoints (they would be overwritten).
    """
    check_run_folder(run_dir, mode)
    folder = run_dir / "checkpoints"
    if mode == "never":
        return 0
    remove_stale_temporaries(folder)
    state, path = load_latest(folder, map_location=str(device))
    if state is None:
        return 0
    restore(path, state, energy, opt)
    if "loss" in state and hasattr(loss_fn, "load_state_dict"):  # e.g. contrastive divergence's replay buffer
        loss_fn.load_state_dict(state["loss"])
    if baseline is not None and "baseline" in state:
        baseline.load_state_dict(state["baseline"])
    set_rng_state(state["rng"])
    log.info("resuming from %s (step %d)", path, state["step"])
    return int(state["step"])
