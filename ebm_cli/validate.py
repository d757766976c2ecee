"""Checks of the run's own settings that the schema's types cannot express (trainer, logger, task).

The components check their own arguments when they are built (ebm_cli/build.py); both run before
anything is written: from a Hydra callback's on_run_start (before the run folder exists) and again
at the start of every task (sweep jobs, tests calling tasks directly).
"""

import dataclasses
import math
import os
import re

from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from ebm_cli.errors import UserError, require, require_non_negative, require_positive
from ebm_cli.runtime.accelerate import COMPILE_CHOICES, COMPILE_MODES, PRECISIONS
from ebm_cli.schema import Config, LoggerConfig, TrainerConfig, task_schema

TASKS = ("train", "infer", "landscape", "compare_inference", "bench")


def _in(prefix: str, check, **values) -> None:
    """A require_* check whose message names prefix.key."""
    try:
        check(**values)
    except UserError as err:
        raise UserError(f"{prefix}.{err}") from None


def check_known_keys(cfg) -> None:
    """Keys added with + that the schema does not know (`+trainer.stepz=3`) are refused, not ignored.
    (The components' own keys are checked against their classes when they are built.)"""
    sections = {"": Config, "task": task_schema(cfg.task.name), "trainer": TrainerConfig, "logger": LoggerConfig}
    for section, schema in sections.items():
        known = {f.name for f in dataclasses.fields(schema)} | ({"hydra"} if not section else set())
        node = cfg if not section else cfg[section]
        for key in node:
            if key not in known:
                name = f"{section}.{key}" if section else key
                raise UserError(f"{name}: not a setting of {section or 'ebm-run'} (its settings: "
                                f"{', '.join(sorted(known - {'hydra'}))})")


def validate(cfg) -> None:
    """Raise UserError naming the first impossible value of the run's own settings."""
    own = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # Hydra's node has its own ???s
    try:
        OmegaConf.to_container(own, resolve=True, throw_on_missing=False)
    except InterpolationResolutionError as exc:  # e.g. inference.k=${energy.z.k} for an energy without z
        key = getattr(exc, "full_key", None) or "?"
        raise UserError(f"{key}: {str(exc).splitlines()[0]}; set {key}=<a value>") from None
    missing = sorted(OmegaConf.missing_keys(own))
    if missing:
        raise UserError(f"{missing[0]} is required: add {missing[0]}=<value> to the command line")
    task = cfg.task.name
    require(task in TASKS, "task.name", task, f"must be one of {', '.join(TASKS)}")
    lacking = {f.name for f in dataclasses.fields(task_schema(task))} - set(cfg.task)
    require(not lacking, "task.name", task, f"is chosen with task={task}, which brings its settings ({', '.join(sorted(lacking))})")
    check_known_keys(cfg)
    if task in ("infer", "landscape", "compare_inference"):
        require(cfg.run_dir is not None, "run_dir", None, f"task={task} needs run_dir=<a finished training run>")
        require(not os.path.isfile(cfg.run_dir), "run_dir", cfg.run_dir, "is a file, not a run's folder")
        require(os.path.isdir(cfg.run_dir), "run_dir", cfg.run_dir, "no such folder")
    if task == "infer":
        require(bool(cfg.x), "x", cfg.x, "task=infer needs inputs, e.g. 'x=[0.0,0.5]'")
    require(cfg.objective_direction in ("maximize", "minimize"), "objective_direction", cfg.objective_direction,
            "must be maximize or minimize")
    require(0 <= cfg.seed < 2**32, "seed", cfg.seed, "must be in [0, 2^32)")

    t = cfg.trainer
    _in("trainer", require_non_negative, steps=t.steps, weight_decay=t.weight_decay, ckpt_every=t.ckpt_every)
    _in("trainer", require_positive, lr=t.lr, log_every=t.log_every, max_abs=t.max_abs)
    require(t.batch_size is None or t.batch_size > 0, "trainer.batch_size", t.batch_size,
            "must be > 0 (or null: the data's own)")
    require(t.devices >= 1, "trainer.devices", t.devices, "must be >= 1 (processes training the run together)")
    require(t.batch_size is None or t.batch_size % t.devices == 0, "trainer.batch_size", t.batch_size,
            f"must be a multiple of trainer.devices={t.devices} (each process trains on batch_size / devices rows)")
    require(t.devices == 1 or re.fullmatch(r"auto|cpu|cuda", t.device) is not None, "trainer.device", t.device,
            f"names one GPU, but trainer.devices={t.devices} puts rank r on cuda:r: use cuda, auto or cpu")
    require(t.resume in ("never", "auto"), "trainer.resume", t.resume, "must be never or auto")
    require(t.grad_clip is None or (t.grad_clip > 0 and math.isfinite(t.grad_clip)), "trainer.grad_clip",
            t.grad_clip, "must be > 0 or null")
    require(re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device) is not None, "trainer.device", t.device,
            "must be auto, cpu, cuda or cuda:N")
    _in("trainer", require_non_negative, eval_every=t.eval_every, patience=t.patience, lr_drops=t.lr_drops)
    require(0 < t.lr_drop < 1, "trainer.lr_drop", t.lr_drop, "must be between 0 and 1")
    require(0 < t.val_fraction < 1, "trainer.val_fraction", t.val_fraction, "must be between 0 and 1")
    require(t.keep in ("last", "best"), "trainer.keep", t.keep, "must be last or best")
    require(str(t.compile).lower() in COMPILE_CHOICES, "trainer.compile", t.compile, "must be auto, true or false")
    require(t.compile_mode in COMPILE_MODES, "trainer.compile_mode", t.compile_mode,
            f"must be one of {', '.join(COMPILE_MODES)}")
    require(t.precision in PRECISIONS, "trainer.precision", t.precision, f"must be one of {', '.join(PRECISIONS)}")
    require(0 <= t.ema < 1, "trainer.ema", t.ema, "must be in [0, 1) (0 = no moving average)")

    lg = cfg.logger
    _in("logger", require_non_negative, landscape_every=lg.landscape_every)
    _in("logger", require_positive, video_examples=lg.video_examples, text_examples=lg.text_examples)
    require(lg.resolution >= 2, "logger.resolution", lg.resolution, "must be >= 2")
    require(math.isfinite(lg.collapse_below) and lg.collapse_below >= 0, "logger.collapse_below", lg.collapse_below,
            "must be a finite number >= 0")
    for key in ("slice_x", "slice_betas", "latent_betas"):
        if key == "slice_x" and lg[key] is None:
            continue  # from the data's x range
        require(len(lg[key]) > 0, f"logger.{key}", list(lg[key]), "needs at least one value")
        require(all(math.isfinite(v) for v in lg[key]), f"logger.{key}", list(lg[key]), "every value must be finite")
    for key in ("slice_betas", "latent_betas"):
        require(all(v > 0 for v in lg[key]), f"logger.{key}", list(lg[key]), "every beta must be > 0")
