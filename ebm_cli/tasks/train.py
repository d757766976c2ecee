"""train(cfg, run_dir) -> metrics: the whole training run, with no Hydra inside."""

import contextlib
import copy
import logging
import os
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from ebm_cli.build import Run, resolve_device
from ebm_cli.errors import UserError
from ebm_cli.plots.figures import save_figures, save_texts
from ebm_cli.runtime.accelerate import compile_energy, set_precision, wants_compile
from ebm_cli.runtime.checkpoint import BEST, load_checkpoint, restore
from ebm_cli.runtime.console import TrainingProgress, get_console, metrics_table, print_results
from ebm_cli.runtime.disk import writing
from ebm_cli.runtime.run_folder import write_json
from ebm_cli.runtime.signals import Preempted, StopSignals
from ebm_cli.runtime.tb import TBLogger
from ebm_cli.runtime.summary import sweep_objective
from ebm_cli.tasks.objective import task_config_yaml
from ebm_cli.tasks.prepare import prepare
from ebm_cli.tasks.evaluate import evaluate_baseline, evaluate_model
from ebm_cli.training.checkpointing import Checkpointer, restore_latest, resume
from ebm_cli.training.distributed import Group, Ranks, Single, launched
from ebm_cli.training.early_stopping import ValidationStopper
from ebm_cli.training.ema import WeightAverage, weight_average_of
from ebm_cli.training.run_callbacks import (CollapseCheck, DivergenceReport, Landscapes, PeriodicCheckpoint, ScalarLogging,
                                           StopOnSignal, Validation)
from ebm_cli.training.trainer import Diverged, Trainer

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


def hparams_of(cfg) -> Dict[str, Any]:
    """Flat scalar hyper-parameters for TensorBoard's HParams tab: `energy.hidden`, ... and, for each
    group, its class by its short name under the group's own (`energy`: `MLPEnergy`)."""
    flat = {}

    def add(prefix: str, node) -> None:
        for key, value in node.items():
            if key == "_target_":  # the group's choice, readable in a narrow column
                flat[prefix] = str(value).rsplit(".", 1)[-1]
            elif isinstance(value, dict):  # nested groups (energy.z.k) become dotted names
                add(f"{prefix}.{key}", value)
            elif isinstance(value, (bool, int, float, str)):
                flat[f"{prefix}.{key}"] = value
            elif value is not None:
                flat[f"{prefix}.{key}"] = str(value)

    for group in ("dataset", "energy", "inference", "beta", "loss", "optimizer", "scheduler", "trainer"):
        if cfg.get(group) is not None:
            add(group, OmegaConf.to_container(cfg[group], resolve=True))
    flat["seed"] = cfg.seed
    return flat


def changed_hparams(names, overrides: Sequence[str]) -> List[str]:
    """The hparams that the command line's overrides set: `trainer.lr=0.01` names trainer.lr, a
    group's choice (`energy=unet_latent`, `energy/z=box`) every setting under it and the group
    itself. trainer.resume (what a continued run adds) is not a setting the user changed."""
    keys = [o.lstrip("+~").split("=", 1)[0].split("@", 1)[0].replace("/", ".") for o in overrides]
    keys = [k for k in keys if k != "trainer.resume"]
    return [n for n in names if any(n == k or n.startswith(k + ".") for k in keys)]


def train(cfg, run_dir: Path, rank: int = 0, init_file: Optional[str] = None, ready=None,
          changed: Sequence[str] = ()) -> Dict[str, float]:
    """Train the configured energy on the configured data; evaluate; log; checkpoint.

    Writes into run_dir: tb/, checkpoints/last.pt (+ previous.pt, + best.pt with trainer.keep=best),
    figures/, metrics.json, and divergence.json if the run diverges. With trainer.resume=auto it
    continues from the run folder's last good checkpoint, so that an interrupted run ends exactly as
    an uninterrupted one.

    The budget comes from the data: every trainer.eval_every steps the validation split's loss and
    metrics are logged under Validation/ (they draw on their own random stream: training is the same with
    or without them); trainer.keep=best keeps the best of those weights for the test inputs, and
    trainer.patience stops a run whose objective has not improved for that many evaluations
    (training/early_stopping.py), trainer.steps being only a ceiling. What is evaluated, kept and
    reported is the moving average of the weights (trainer.ema; training/ema.py).

    With trainer.devices=N the command's process is rank 0 of N (training/distributed.py): it starts
    ranks 1..N-1 (train(cfg, run_dir, rank=r, init_file=..., ready=...): the same run, built from the
    same config, writing nothing; `ready` is called once it is built), and it alone evaluates and writes.
    `changed`: the command line's overrides (the HParams tab shows those settings first).
    """
    run_dir = Path(run_dir)
    world, main = int(cfg.trainer.get("devices", 1)), rank == 0
    launch = launched()  # torchrun's processes: the ranks exist already
    if launch is not None:
        if world not in (1, launch[1]):
            raise UserError(f"trainer.devices={world}: torchrun started {launch[1]} processes (leave trainer.devices "
                            "at 1 under torchrun, or make them equal)")
        world = launch[1]
    local_rank = launch[2] if launch is not None else rank
    if world > 1 and local_rank > 0:
        cfg = on_rank_device(cfg, local_rank)
    # plain values: an OmegaConf attribute costs microseconds, read a dozen times per step
    t = SimpleNamespace(**OmegaConf.to_container(cfg.trainer, resolve=True))
    seed_everything(cfg.seed, t.deterministic)
    run, baseline, trainer = prepare(cfg)
    energy, loss_fn, beta, device, val = run.energy, run.loss, run.beta, run.device, run.validation
    set_precision(t.precision, device)
    # callbacks.ema, built before compiling (the average is only evaluated, eager); without it the
    # trained weights are evaluated
    average = weight_average_of(trainer) or WeightAverage(energy, 0.0)
    if wants_compile(t.compile, device, t.steps):
        if getattr(loss_fn, "needs_double_backward", False):
            log.info("trainer.compile: the energy stays eager: loss=%s differentiates through grad_y F, and "
                     "torch.compile has no double backward", loss_fn.name)
        else:
            compile_energy(energy, device, t.compile_mode)
    # the evaluations on val so far (kept in checkpoints); no early stop while beta still moves
    stopper = ValidationStopper(cfg.objective_direction == "maximize", t.patience if val is not None else 0,
                                not_before=int(getattr(beta, "settled_at", 0) or 0), lr_drops=t.lr_drops)
    opt = trainer.optimizer
    config_yaml = task_config_yaml(cfg)
    if main:
        start = resume(run_dir, t.resume, energy, opt, device, loss_fn, baseline, config_yaml, stopper, average, trainer,
                       world)
    else:  # the checkpoint rank 0 has just checked (it writes nothing until every rank is ready)
        start = restore_latest(run_dir / "checkpoints", energy, opt, loss_fn, baseline, stopper, average, trainer,
                               rank, world) if t.resume == "auto" else 0
    trainer.step_count, trainer.tb, trainer.run_dir = start, None, run_dir
    ranks, sync, finished = None, Single(), False
    try:
        if world > 1:
            check_ranks(run, world)
            if launch is not None:  # rank 0 hands its config and folder to the others (follow_rank_0)
                sync = trainer.sync = Group(rank, world, None, device, cfg.seed)
                if main:
                    sync.broadcast_list([config_yaml, str(run_dir)])
            else:
                if main:
                    ranks = start_ranks(config_yaml, run, world, run_dir)
                else:
                    ready()
                sync = trainer.sync = Group(rank, world, init_file or ranks.init_file, device, cfg.seed)
            log.info("%s train this run (%s), %d rows each per step",
                     f"{world} processes started by the launcher" if launch else f"trainer.devices={world}: {world} processes",
                     "nccl" if device.type == "cuda" else "gloo", run.batch_size // world)
            starts = sync.gather(start)
            if len(set(starts)) > 1:
                raise UserError(f"trainer.resume=auto: the ranks restored different steps ({starts})")
        metrics = _train(cfg, run_dir, t, run, baseline, trainer, stopper, average, config_yaml, start, sync, changed)
        finished = True
        return metrics
    except RuntimeError:
        failure = ranks.failure() if ranks is not None else None
        if failure is None:
            raise
        raise UserError(f"trainer.devices={world}: {failure}") from None
    finally:
        sync.close()
        if ranks is not None:
            ranks.join(timeout=60.0 if finished else 0.0)  # a failed run's ranks are stopped at once


def on_rank_device(cfg, local_rank: int):
    """This rank's copy of the config: on cuda:<local rank> where the run is on GPUs."""
    if resolve_device(cfg.trainer.device).type != "cuda":
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.trainer.device = f"cuda:{local_rank}"
    return cfg


def check_ranks(run, world: int) -> None:
    """The run splits into world ranks: its batch, and the GPUs of a node."""
    if run.batch_size % world:
        raise UserError(f"trainer.devices={world}: the batch size {run.batch_size} (the data's own) is not a multiple "
                        f"of it; set trainer.batch_size=<a multiple of {world}>")
    if run.device.type == "cuda" and run.device.index is not None and run.device.index >= torch.cuda.device_count():
        raise UserError(f"trainer.devices={world}: only {torch.cuda.device_count()} CUDA device(s) here")


def start_ranks(config_yaml: str, run, world: int, run_dir: Path) -> Ranks:
    """Ranks 1..world-1, started from the run's config and waited for until each has built the run."""
    if run.device.type == "cuda" and world > torch.cuda.device_count():
        raise UserError(f"trainer.devices={world}: only {torch.cuda.device_count()} CUDA device(s) here")
    ranks = Ranks(world, config_yaml, run_dir, train)
    try:
        ranks.wait_ready()
    except BaseException:
        ranks.join(timeout=0.0)
        raise
    return ranks


def _train(cfg, run_dir: Path, t, run: Run, baseline, trainer: Trainer, stopper, average, config_yaml: str, start: int,
           sync, changed: Sequence[str] = ()) -> Dict[str, float]:
    """train()'s loop, final evaluation and records, once the run is built and resumed."""
    data, energy, inference, loss_fn, beta, device = run.data, run.energy, run.inference, run.loss, run.beta, run.device
    val, main = run.validation, sync.is_main
    evaluated = average.evaluated  # the averaged weights (or the trained ones with trainer.ema=0)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)  # Hydra makes it; a call from Python may not have
    log.info("run folder %s | data %s: %d train rows, %d test x | device %s%s", run_dir, data.source,
             data.num_rows, len(data.x_test), device, f" | resumed at step {start}" if start else "")
    if getattr(energy, "chosen_because", None):
        log.info(energy.chosen_because)  # which energy the data's shape picked (energy=frames), and why

    # purge_step: TensorBoard drops what a killed run logged after its last checkpoint.
    tb = TBLogger(run_dir / "tb" if cfg.logger.tensorboard and main else None, purge_step=start + 1 if start else None)
    trainer.tb = tb
    if not start and main:
        tb.text("config", "```\n" + config_yaml + "```")
        if val is not None:  # one chart of both losses: overfitting shows as a gap between them
            tb.layout({"train vs validation": {"loss": ["Multiline", ["Training/loss", "Validation/loss"]]}})

    # the run's own callbacks, after the config's (training/run_callbacks.py)
    checkpointer = Checkpointer(run_dir, trainer, average, stopper, config_yaml, run.meta, baseline)
    landscapes = Landscapes(cfg.logger.landscape_every, t.steps, data, cfg.logger, device, evaluated,
                            baseline.model if baseline is not None else None)
    trainer.callbacks.update(train_scalars=ScalarLogging(t.log_every, t.steps, evaluated, data, device),
                             landscapes=landscapes)
    if val is not None:
        trainer.callbacks["validation"] = Validation(
            t.eval_every, t.steps, val, inference, average, stopper, checkpointer, beta, cfg.objective,
            cfg.objective_direction == "maximize", cfg.seed, t.keep == "best", t.lr_drop, t.patience, device)
    trainer.callbacks["checkpoint"] = PeriodicCheckpoint(t.ckpt_every, t.steps, checkpointer)
    trainer.callbacks["divergence"] = DivergenceReport(run_dir, cfg.seed)
    collapse = CollapseCheck(evaluated, data, device, cfg.logger.collapse_below, loss_fn.name)
    trainer.callbacks = {"collapse": collapse, **trainer.callbacks}  # first at the end: the others' metrics hold it

    def stop(status: str, step: int, error: UserError, then=None) -> None:
        for record in (tb.close, lambda: write_json(run_dir / "metrics.json", {
                "status": status, "task": "train", "step": step, "error": str(error)})):
            with contextlib.suppress(UserError):  # a full disk must not hide why the run stopped
                record()
        if then is not None:  # after metrics.json: a launcher's signal handler may end the process
            then()
        raise error

    start_time = time.perf_counter()
    # earlier when the validation objective stops improving (trainer.patience); a run resumed after it
    # stopped early (killed during its final evaluation) does not train on
    end = stopper.stopped_at if stopper.stopped_at is not None else t.steps
    if val is None and start == 0:
        log.info("no validation split (trainer.eval_every=0): training to trainer.steps=%d, the last weights kept", t.steps)
    energy.train()
    for callback in trainer.callbacks.values():
        callback.on_train_start(trainer)
    with StopSignals() as signals, TrainingProgress(t.steps, start, cfg.logger.progress and main, t.log_every) as progress:
        trainer.callbacks["stop_on_signal"] = StopOnSignal(signals, checkpointer)  # the last: after the step's saves
        for step in range(start, end):
            b = beta(step)
            average.set_beta(b)  # the one place a latent energy's F_beta gets the loss's beta
            idx = torch.randint(0, data.num_rows, (run.batch_size,), device="cpu")  # rows of the host data, moved as a batch
            xb, yb = data.augment(*data.batch(idx, device))
            xb, yb = sync.shard(xb), sync.shard(yb)  # this rank's rows (all ranks drew the same batch)
            try:  # the stop comes within the step that diverged, before its update reaches the weights
                values = trainer.step(xb, yb, b)  # ... and the callbacks: scalars, landscapes, validation, checkpoint
            except Diverged as diverged:  # on every rank at once (the values are averaged over them)
                for callback in trainer.callbacks.values():
                    callback.on_exception(trainer, step, diverged)  # divergence.json (DivergenceReport)
                if not main:
                    return {}
                stop("diverged", step, UserError(f"training diverged at step {step + 1}: {diverged} (see divergence.json; "
                                                 "the last checkpoint is untouched)", DIVERGED_EXIT_CODE))
            except Preempted as preempted:  # StopOnSignal, at the end of this step: its checkpoint is saved
                if not main:
                    return {}
                # pass_on: e.g. submitit requeues the job, which continues here with trainer.resume=auto
                stop("preempted", step + 1, preempted, then=signals.pass_on)
            done = step + 1
            progress.update(done, values["loss"])
            if sync.any(bool(trainer.should_stop)):  # patience ran out, or a callback's reason (on any rank)
                trainer.should_stop = trainer.should_stop or "a callback on another rank asked to stop"
                end = stopper.stopped_at = done  # a resumed run (killed in its final evaluation) ends here too
                log.info("stopping at step %d: %s", done, trainer.should_stop)
                break
        train_seconds = time.perf_counter() - start_time
        average.set_beta(beta(end))  # evaluate (and save) at the schedule's final beta
        checkpointer.save(end)
        if not main:
            return {}
        kept = stopper.best["step"] if val is not None and t.keep == "best" and stopper.best["step"] is not None else end
        if val is not None and end < stopper.not_before:
            log.info("the beta schedule was still annealing (it settles at step %d) when the run ended at step %d: "
                     "its last weights are kept", stopper.not_before, end)
        if kept != end:
            restore(run_dir / "checkpoints" / BEST, load_checkpoint(run_dir / "checkpoints" / BEST, "cpu"), evaluated)
            average.set_beta(beta(kept))

    result = evaluate_model(evaluated, inference, data, device)
    metrics = {**result["metrics"], "train_time_s": train_seconds}
    if baseline is not None:
        metrics.update(evaluate_baseline(baseline.model, data, device))
    trainer.last_beta = beta(kept)  # the evaluated weights' (the collapse check measures at it)
    for callback in trainer.callbacks.values():  # the collapse check first: energy_range, energy_gap
        callback.on_train_end(trainer, end, metrics)
    collapsed = collapse.collapsed
    figs, texts = landscapes.draw(tb, end, candidates=result["candidates"])
    with writing(run_dir / "figures"):
        save_figures(figs, run_dir / "figures")
        save_texts(texts, run_dir / "figures")
    record = {"status": "completed", "task": "train", "step": end, "metrics": metrics}
    if collapsed is not None:  # flat: beta * energy_range < logger.collapse_below
        record["collapsed"] = collapsed
    if val is not None:  # which weights the test metrics are of, and the best validation objective
        record.update(evaluated_step=kept, best_validation={"step": stopper.best["step"], cfg.objective: stopper.best["value"]},
                      stopped_early=end < t.steps)
    params = hparams_of(cfg)
    hp_metrics = {f"metrics/{k}": v for k, v in metrics.items()}
    value, split = sweep_objective(record, cfg.objective)
    if split == "validation":  # the HParams tab can compare runs as a sweep compares them
        hp_metrics[f"metrics/validation_{cfg.objective}"] = value
    tb.hparams(params, hp_metrics, end, first=changed_hparams(params, changed))
    tb.close()
    write_json(run_dir / "metrics.json", record)
    title = f"{type(energy).__name__} on {type(data).__name__} data (inference={inference.name})"
    get_console().print(metrics_table(title, {"test": metrics}))
    print_results(run_dir, ["metrics.json", "figures/", "checkpoints/"],
                  run_dir / "tb" if cfg.logger.tensorboard else None)
    return metrics

