"""train(cfg, run_dir) -> metrics: the whole training run, with no Hydra inside."""

import copy
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf

from ebm_cli.build import Run, build_baseline, build_run
from ebm_cli.core.energy import LatentEnergy, PredictorEnergy
from ebm_cli.errors import UserError
from ebm_cli.plots.figures import render, save_figures, save_texts
from ebm_cli.runtime.accelerate import autocast, compile_energy, set_precision, wants_compile
from ebm_cli.runtime.checkpoint import (BEST, load_checkpoint, load_latest, remove_stale_temporaries, restore, rng_state,
                                        save_checkpoint, set_rng_state)
from ebm_cli.runtime.console import TrainingProgress, get_console, metrics_table
from ebm_cli.runtime.run_folder import check_run_folder, write_json
from ebm_cli.runtime.summary import metric_key
from ebm_cli.runtime.signals import Preempted, StopSignals
from ebm_cli.runtime.tb import TBLogger
from ebm_cli.schedules import cosine
from ebm_cli.tasks.baseline import Baseline
from ebm_cli.tasks.checks import TIMINGS, check_objective, expected_metrics, task_config_yaml
from ebm_cli.tasks.evaluate import evaluate_baseline, evaluate_model
from ebm_cli.tasks.spread import energy_spread, is_flat
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


def learning_rate(t, step: int) -> float:
    """trainer.lr, or its cosine decay from lr to lr_min over trainer.steps. A decay never climbs:
    with an lr below lr_min (a user lowering lr alone) it stays at lr."""
    return cosine(t.lr, min(t.lr_min, t.lr), step, t.steps) if t.lr_schedule == "cosine" else t.lr


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


def prepare(cfg) -> Tuple[Run, Optional[Baseline]]:
    """The run's components and its MSE baseline (trainer.baseline), every check passed: what a
    training run needs, and what the pre-run callback builds to refuse a bad config early."""
    validate(cfg)
    run = build_run(cfg)
    baseline = None
    if cfg.trainer.baseline and not isinstance(run.energy, PredictorEnergy):  # a regressor is its own baseline
        model = build_baseline(type(run.data), cfg.energy, run.meta)
        if model is None:
            raise UserError(f"trainer.baseline=true: {type(run.data).__name__} data has no feed-forward MSE model "
                            "(for sentences the one-mode baseline of a chain energy is its own run, energy.z.k=1)")
        baseline = Baseline(model.to(run.device), cfg.trainer.lr)
    check_objective(cfg, expected_metrics(run, baseline))
    if cfg.trainer.keep == "best" or cfg.trainer.patience:
        measured = [k for k in expected_metrics(run, None) if k not in TIMINGS]
        if metric_key(dict.fromkeys(measured), cfg.objective) is None:
            raise UserError(f"objective={cfg.objective}: not measured on the validation split, which trainer.keep=best "
                            f"and trainer.patience compare by (one of {', '.join(measured)})")
    return run, baseline


def train(cfg, run_dir: Path) -> Dict[str, float]:
    """Train the configured energy on the configured data; evaluate; log; checkpoint.

    Writes into run_dir: tb/, checkpoints/last.pt (+ previous.pt, + best.pt with trainer.keep=best),
    figures/, metrics.json, and divergence.json if the run diverges. With trainer.resume=auto it
    continues from the run folder's last good checkpoint, so that an interrupted run ends exactly as
    an uninterrupted one. With trainer.eval_every, the validation split's loss and metrics are logged
    under val/ (they draw on their own random stream: training is the same with or without them);
    trainer.keep=best evaluates the best of those checkpoints on the test inputs; trainer.patience
    stops a run whose objective has not improved for that many evaluations.
    """
    run_dir = Path(run_dir)
    t = cfg.trainer
    seed_everything(cfg.seed, t.deterministic)
    run, baseline = prepare(cfg)
    data, meta, energy, inference, loss_fn, beta, device = (run.data, run.meta, run.energy, run.inference, run.loss,
                                                            run.beta, run.device)
    val = run.validation
    set_precision(t.precision, device)
    if wants_compile(t.compile, device, t.steps):
        if getattr(loss_fn, "needs_double_backward", False):
            log.info("trainer.compile: the energy stays eager: loss=%s differentiates through grad_y F, and "
                     "torch.compile has no double backward", loss_fn.name)
        else:
            compile_energy(energy, device, t.compile_mode)
    best: Dict[str, Any] = {"step": None, "value": None}  # the best evaluation on val so far (kept in checkpoints)
    opt = torch.optim.Adam(energy.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    config_yaml = task_config_yaml(cfg)
    start = resume(run_dir, t.resume, energy, opt, device, loss_fn, baseline, config_yaml, best)
    run_dir.mkdir(parents=True, exist_ok=True)  # Hydra makes it; a call from Python may not have
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    log.info("run folder %s | data %s: %d train rows, %d test x | device %s%s", run_dir, data.source,
             len(x_train), len(data.x_test), device, f" | resumed at step {start}" if start else "")

    # purge_step: TensorBoard drops what a killed run logged after its last checkpoint.
    tb = TBLogger(run_dir / "tb" if cfg.logger.tensorboard else None, purge_step=start + 1 if start else None)
    if not start:
        tb.text("config", "```\n" + config_yaml + "```")
        if val is not None:  # one chart of both losses: overfitting shows as a gap between them
            tb.layout({"train vs validation": {"loss": ["Multiline", ["train/loss", "val/loss"]]}})

    def checkpoint(step: int, name: str = "last.pt") -> None:
        save_checkpoint(run_dir / "checkpoints", {
            "model": energy.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "rng": rng_state(), "config": config_yaml, "meta": meta, "best": dict(best),
            **({"loss": loss_fn.state_dict()} if loss_fn.state_dict() else {}),
            **({"baseline": baseline.state_dict()} if baseline is not None else {}),
        }, name)

    def validate_at(step: int, b: float) -> bool:
        """Log the validation loss and metrics; keep best.pt; True when patience has run out."""
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            scorer = copy.deepcopy(loss_fn) if loss_fn.state_dict() else loss_fn  # cd's replay buffer stays training's
            val_loss, _ = scorer(energy, val.x_train.to(device), val.y_train.to(device), b)
            scores = {k: v for k, v in evaluate_model(energy, inference, val, device)["metrics"].items() if k not in TIMINGS}
        energy.train()
        tb.scalars({"loss": float(val_loss.detach()), **scores}, step, "val/")
        key = metric_key(scores, cfg.objective)
        value = scores[key] if key else None
        if value is None or not math.isfinite(value):
            return False
        maximize = cfg.objective_direction == "maximize"
        if best["value"] is None or (value > best["value"] if maximize else value < best["value"]):
            best.update(step=step, value=value)
            if t.keep == "best":
                checkpoint(step, BEST)
            return False
        return bool(t.patience) and step - best["step"] >= t.patience * t.eval_every

    def landscape(step: int, cands=None):
        """Draw and log the figures (and text summaries) of the energy at this step; both."""
        figs = data.figures(energy, cfg.logger, device, candidates=cands,
                            baseline=baseline.model if baseline is not None else None)
        figs = {name: render(fig) for name, fig in figs.items()}  # drawn once, for TensorBoard and the PNGs
        for name, image in figs.items():
            tb.figure(f"landscape/{name}", image, step)
        texts = data.texts(energy, cfg.logger, device)
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
    end = t.steps  # earlier when the validation objective stops improving (trainer.patience)
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
            if isinstance(energy, LatentEnergy):  # the one place a latent energy's F_beta gets the loss's beta
                energy.set_beta(b)
            idx = torch.randint(0, len(x_train), (t.batch_size,), device=device)
            xb, yb = data.augment(x_train[idx], y_train[idx])
            with autocast(t.precision, device):
                loss, stats = loss_fn(energy, xb, yb, b)
            if baseline is not None:  # the same batch, its own optimiser
                stats["baseline_mse"] = baseline.step(xb, yb, learning_rate(t, step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(energy.parameters(), clip)
            # One read-back per step, before the update is applied: a diverging step never
            # reaches the weights, and the run stops within the step it diverged in.
            values = dict(zip(["loss", "grad_norm", *stats], torch.stack([loss.detach(), grad_norm, *stats.values()]).float().tolist()))
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
                spread = energy_spread(energy, data, device, with_gap=False)  # None for token sequences
                tb.scalars({**values, "beta": b, **(spread or {})}, done, "train/")
            progress.update(done, values["loss"])
            if cfg.logger.landscape_every and done % cfg.logger.landscape_every == 0 and done != t.steps:
                landscape(done)
                energy.train()
            if val is not None and (done % t.eval_every == 0 or done == t.steps) and validate_at(done, b):
                end = done
                log.info("stopping early at step %d: objective %s has not improved on the validation split since "
                         "step %d (trainer.patience=%d)", done, cfg.objective, best["step"], t.patience)
                break
            if t.ckpt_every and done % t.ckpt_every == 0 and done != t.steps:
                checkpoint(done)
        train_seconds = time.perf_counter() - start_time
        if isinstance(energy, LatentEnergy):  # evaluate (and save) at the schedule's final beta
            energy.set_beta(beta(end))
        checkpoint(end)
        if t.keep == "best" and best["step"] is not None and best["step"] != end:
            restore(run_dir / "checkpoints" / BEST, load_checkpoint(run_dir / "checkpoints" / BEST, "cpu"), energy)
            if isinstance(energy, LatentEnergy):
                energy.set_beta(beta(best["step"]))

    result = evaluate_model(energy, inference, data, device)
    metrics = {**result["metrics"], "train_time_s": train_seconds}
    spread = energy_spread(energy, data, device)
    collapsed = None
    if spread is not None:
        metrics.update(spread)
        final_beta = beta(best["step"] if t.keep == "best" and best["step"] is not None else end)
        collapsed = is_flat(spread["energy_range"], final_beta, cfg.logger.collapse_below)
        if collapsed:
            log.warning("the energy collapsed: flat over the y box (beta * energy_range = %.3g < "
                        "logger.collapse_below=%g: P_beta(y | x) is nearly uniform; loss=%s)",
                        final_beta * spread["energy_range"], cfg.logger.collapse_below, loss_fn.name)
    if baseline is not None:
        metrics.update(evaluate_baseline(baseline.model, data, device))
    figs, texts = landscape(end, cands=result["candidates"])
    save_figures(figs, run_dir / "figures")
    save_texts(texts, run_dir / "figures")
    tb.hparams(hparams_of(cfg), {f"metrics/{k}": v for k, v in metrics.items()}, end)
    tb.close()
    record = {"status": "completed", "task": "train", "step": end, "metrics": metrics}
    if collapsed is not None:  # flat: beta * energy_range < logger.collapse_below
        record["collapsed"] = collapsed
    if val is not None:  # which weights the test metrics are of, and the best validation objective
        record.update(evaluated_step=best["step"] if t.keep == "best" and best["step"] is not None else end,
                      best_validation={"step": best["step"], cfg.objective: best["value"]}, stopped_early=end < t.steps)
    write_json(run_dir / "metrics.json", record)
    title = f"{type(energy).__name__} on {type(data).__name__} data (inference={inference.name})"
    get_console().print(metrics_table(title, {"test": metrics}))
    return metrics


def resume(run_dir: Path, mode: str, energy, opt, device, loss_fn=None, baseline=None, config_yaml=None,
           best=None) -> int:
    """Restore model, optimiser and RNG states (and into `best`, the best validation so far) from
    run_dir's last good checkpoint; the step.

    mode=never refuses a folder that already holds checkpoints (they would be overwritten); mode=auto
    refuses a run of another config (config_yaml: this run's).
    """
    check_run_folder(run_dir, "train", mode, config_yaml, started=True)
    folder = run_dir / "checkpoints"
    if mode == "never":
        return 0
    remove_stale_temporaries(folder)
    # Read on the host whatever `device` is: the RNG states must stay there (set_rng_state, numpy),
    # and load_state_dict copies weights, optimiser moments and a loss's state to where they live.
    state, path = load_latest(folder, map_location="cpu")
    if state is None:
        return 0
    restore(path, state, energy, opt)
    if "loss" in state and loss_fn is not None:  # e.g. contrastive divergence's replay buffer
        loss_fn.load_state_dict(state["loss"])
    if baseline is not None and "baseline" in state:
        baseline.load_state_dict(state["baseline"])
    set_rng_state(state["rng"])
    if best is not None and state.get("best"):
        best.update(state["best"])
    log.info("resuming from %s (step %d)", path, state["step"])
    return int(state["step"])
