"""Value checks that a schema's types cannot express (beta > 0, k >= 1, ...).

Run before anything is written: from a Hydra callback's on_run_start (before the run folder
exists) and again at the start of every task (sweep jobs, tests calling tasks directly).
"""

import os
import re

from omegaconf import OmegaConf

from ebm_cli.energies.base import ACTIVATIONS
from ebm_cli.errors import UserError

TASKS = ("train", "infer", "landscape")


def _require(ok: bool, key: str, value, rule: str) -> None:
    if not ok:
        raise UserError(f"{key}={value}: {rule}")


def _positive(node, prefix: str, *keys: str) -> None:
    for k in keys:
        _require(node[k] > 0, f"{prefix}.{k}", node[k], "must be > 0")


def _non_negative(node, prefix: str, *keys: str) -> None:
    for k in keys:
        _require(node[k] >= 0, f"{prefix}.{k}", node[k], "must be >= 0")


def validate(cfg) -> None:
    """Raise UserError naming the first impossible value in cfg (a composed ebm-run config)."""
    own = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # Hydra's node has its own ???s
    missing = sorted(OmegaConf.missing_keys(own))
    if missing:
        raise UserError(f"{missing[0]} is required: add {missing[0]}=<value> to the command line")
    task = cfg.task.name
    _require(task in TASKS, "task.name", task, f"must be one of {', '.join(TASKS)}")
    if task in ("infer", "landscape"):
        _require(cfg.run_dir is not None, "run_dir", None, f"task={task} needs run_dir=<a finished training run>")
        _require(os.path.isdir(cfg.run_dir), "run_dir", cfg.run_dir, "no such folder")
    if task == "infer":
        _require(bool(cfg.x), "x", cfg.x, "task=infer needs inputs, e.g. 'x=[0.0,0.5]'")

    _require(cfg.objective_direction in ("maximize", "minimize"), "objective_direction", cfg.objective_direction,
             "must be maximize or minimize")

    d = cfg.dataset
    _positive(d, "dataset", "train_size", "test_size", "eps")
    _non_negative(d, "dataset", "noise")
    _require(d.x_min < d.x_max, "dataset.x_min", d.x_min, f"must be below dataset.x_max={d.x_max}")
    _require(0 < d.test_fraction < 1, "dataset.test_fraction", d.test_fraction, "must be between 0 and 1")
    if d.path is not None:
        _require(os.path.isfile(d.path), "dataset.path", d.path, "no such file")

    e = cfg.energy
    _positive(e, "energy", "hidden")
    _non_negative(e, "energy", "depth")
    _require(e.activation in ACTIVATIONS, "energy.activation", e.activation, f"must be one of {', '.join(ACTIVATIONS)}")

    i = cfg.inference
    _positive(i, "inference", "k")
    _non_negative(i, "inference", "dedup")
    if i.name == "grid":
        _require(i.points >= 2, "inference.points", i.points, "must be >= 2")
    if i.name == "gradient":
        _positive(i, "inference", "starts", "steps", "lr")
        _non_negative(i, "inference", "lr_min", "tol")
        _require(i.optimizer in ("adam", "sgd"), "inference.optimizer", i.optimizer, "must be adam or sgd")

    b = cfg.beta
    if b.name == "constant":
        _positive(b, "beta", "value")
    elif b.name == "step":
        _require(all(v > 0 for v in b.betas), "beta.betas", list(b.betas), "every beta must be > 0")
        _require(len(b.milestones) == len(b.betas) - 1, "beta.milestones", list(b.milestones), "needs len(beta.betas) - 1 entries")
        _require(list(b.milestones) == sorted(b.milestones), "beta.milestones", list(b.milestones), "must be increasing")
    else:
        _positive(b, "beta", "start", "end", "steps")

    loss = cfg.loss
    if loss.name == "nll":
        _require(loss.grid_points >= 2, "loss.grid_points", loss.grid_points, "must be >= 2")
    if loss.name == "hinge":
        _positive(loss, "loss", "margin", "exclude")
        _non_negative(loss, "loss", "x_window")

    t = cfg.trainer
    _non_negative(t, "trainer", "steps", "weight_decay", "ckpt_every")
    _positive(t, "trainer", "batch_size", "lr", "log_every")
    _positive(t, "trainer", "max_abs")
    _require(t.resume in ("never", "auto"), "trainer.resume", t.resume, "must be never or auto")
    _require(t.grad_clip is None or t.grad_clip > 0, "trainer.grad_clip", t.grad_clip, "must be > 0 or null")
    _require(re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device) is not None, "trainer.device", t.device, "must be auto, cpu, cuda or cuda:N")

    lg = cfg.logger
    _non_negative(lg, "logger", "landscape_every")
    _require(lg.resolution >= 2, "logger.resolution", lg.resolution, "must be >= 2")
    _require(all(v > 0 for v in lg.slice_betas), "logger.slice_betas", list(lg.slice_betas), "every beta must be > 0")
