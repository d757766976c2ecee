"""Value checks that a schema's types cannot express (beta > 0, k >= 1, ...).

Run before anything is written: from a Hydra callback's on_run_start (before the run folder
exists) and again at the start of every task (sweep jobs, tests calling tasks directly).
"""

import os
import re

from omegaconf import OmegaConf

from ebm_cli.data import data_kind
from ebm_cli.data.video import SPRITES
from ebm_cli.energies.base import ACTIVATIONS
from ebm_cli.errors import UserError

TASKS = ("train", "infer", "landscape", "compare_inference")
CHAIN_ENERGIES = ("chain",)  # energies over discrete sequences that dynamic programming serves
FRAME_ENERGIES = ("conv_latent", "conv_regressor")  # energies on frames (dataset=video)
ENERGIES_FOR = {"curves": ("mlp", "decoder", "latent_mlp", "regressor"), "video": FRAME_ENERGIES,
                "translation": CHAIN_ENERGIES}
DATA_WHAT = {"curves": "flat x and y", "video": "frames", "translation": "token sequences"}
DECODERS = ("decoder", "conv_latent")  # latent energies that decode each z to one prediction
PREDICTORS = (*DECODERS, "regressor", "conv_regressor")  # what inference=z_sweep can serve
FRAME_INFERENCE = ("z_sweep", "gradient")


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
    if task in ("infer", "landscape", "compare_inference"):
        _require(cfg.run_dir is not None, "run_dir", None, f"task={task} needs run_dir=<a finished training run>")
        _require(os.path.isdir(cfg.run_dir), "run_dir", cfg.run_dir, "no such folder")
    if task == "infer":
        _require(bool(cfg.x), "x", cfg.x, "task=infer needs inputs, e.g. 'x=[0.0,0.5]'")

    _require(cfg.objective_direction in ("maximize", "minimize"), "objective_direction", cfg.objective_direction,
             "must be maximize or minimize")

    d = cfg.dataset
    kind = data_kind(d)
    _positive(d, "dataset", "train_size", "test_size")
    _require(0 < d.test_fraction < 1, "dataset.test_fraction", d.test_fraction, "must be between 0 and 1")
    if d.path is not None:
        _require(os.path.isfile(d.path), "dataset.path", d.path, "no such file")
    if kind == "translation":
        _validate_translation(d)
    else:
        _positive(d, "dataset", "eps")
        _non_negative(d, "dataset", "noise")
    if kind == "video":
        _validate_video(d)
    if kind == "curves":
        _require(d.x_min < d.x_max, "dataset.x_min", d.x_min, f"must be below dataset.x_max={d.x_max}")

    e = cfg.energy
    allowed = ENERGIES_FOR[kind]
    _require(e.name in allowed, "energy", e.name, f"does not work on dataset={d.name} ({DATA_WHAT[kind]}); "
             f"use energy={' or '.join(allowed)}")
    _positive(e, "energy", "hidden", *[k for k in ("channels", "k") if k in e])
    if "depth" in e:
        _non_negative(e, "energy", "depth")
    if "activation" in e:
        _require(e.activation in ACTIVATIONS, "energy.activation", e.activation, f"must be one of {', '.join(ACTIVATIONS)}")
    if e.name == "chain":
        _require(e.eliminate in ("softmin", "min"), "energy.eliminate", e.eliminate, "must be softmin or min")
    if "z" in e:  # a latent energy
        _validate_latent(e)

    validate_inference(cfg.inference, e.name if task == "train" else None)
    if kind == "video" and task == "train":
        _require(cfg.inference.name in FRAME_INFERENCE, "inference", cfg.inference.name,
                 "cannot search a frame of pixels; frames use inference=z_sweep (or gradient)")
    if kind == "translation" and task == "train":
        _require(cfg.inference.name == "dp", "inference", cfg.inference.name,
                 "searches a continuous y; translations are sequences of words: use inference=dp")

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
    if loss.name == "free_energy":
        # a regressor's low-energy region is its one prediction; a decoder's, its K (or dim-z) predictions
        bounded = e.name in PREDICTORS and e.get("prior", "none") in ("none", "l2")
        _require(bounded, "loss", "free_energy", "has no negative phase, so only an energy whose architecture bounds its "
                 "low-energy region can use it (energy=decoder or conv_latent with energy.prior=none or l2, or a "
                 "regressor); use loss=nll or loss=hinge")
    if kind == "translation":
        _require(loss.name == "nll", "loss", loss.name, "needs a continuous y; a chain energy trains by the exact "
                 "negative log-likelihood: loss=nll")
    if kind == "video":
        _require(loss.name in ("free_energy", "nll"), "loss", loss.name, "needs 1-D inputs and outputs (curves); "
                 "frames train with loss=free_energy or loss=nll")
        if loss.name == "nll" and "z" in e:  # log Z over frames must be exact: no y-grid in 256 dimensions
            exact = e.free_energy.eliminate == "softmin" and e.free_energy.method in ("auto", "enumerate", "quadrature")
            _require(exact, "loss", "nll", "on frames needs log Z in closed form: energy.free_energy.eliminate=softmin "
                     "with method enumerate or quadrature")
    if loss.name == "nll":
        _require(loss.grid_points >= 2, "loss.grid_points", loss.grid_points, "must be >= 2")
    if loss.name == "cd":
        _positive(loss, "loss", "steps", "step_size", "buffer_size")
        _non_negative(loss, "loss", "alpha")
        _require(0 <= loss.reinit <= 1, "loss.reinit", loss.reinit, "must be in [0, 1]")
        _require(loss.grad_clip is None or loss.grad_clip > 0, "loss.grad_clip", loss.grad_clip, "must be > 0 or null")
    if loss.name == "hinge":
        _positive(loss, "loss", "margin", "exclude")
        _non_negative(loss, "loss", "x_window")

    t = cfg.trainer
    _non_negative(t, "trainer", "steps", "weight_decay", "ckpt_every")
    _positive(t, "trainer", "batch_size", "lr", "log_every")
    _positive(t, "trainer", "max_abs")
    _require(t.lr_schedule in ("constant", "cosine"), "trainer.lr_schedule", t.lr_schedule, "must be constant or cosine")
    _non_negative(t, "trainer", "lr_min")
    _require(t.resume in ("never", "auto"), "trainer.resume", t.resume, "must be never or auto")
    if t.baseline:
        _require(kind != "translation", "trainer.baseline", True, "has no feed-forward MSE model for sentences; "
                 "the one-mode baseline of a chain energy is its own run with energy.k=1")
    _require(t.grad_clip is None or t.grad_clip > 0, "trainer.grad_clip", t.grad_clip, "must be > 0 or null")
    _require(re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device) is not None, "trainer.device", t.device, "must be auto, cpu, cuda or cuda:N")

    lg = cfg.logger
    _non_negative(lg, "logger", "landscape_every")
    _require(lg.resolution >= 2, "logger.resolution", lg.resolution, "must be >= 2")
    _positive(lg, "logger", "video_examples")
    _require(all(v > 0 for v in lg.slice_betas), "logger.slice_betas", list(lg.slice_betas), "every beta must be > 0")


def validate_inference(i, energy_name=None) -> None:
    """An inference config node; energy_name (at train) also checks that the method serves it.
    (infer / landscape check the run's own energy when they load it.)"""
    _positive(i, "inference", "k")
    if "dedup" in i:  # every method but dp, whose sequences are distinct by construction
        _non_negative(i, "inference", "dedup")
    if i.name == "z_sweep":
        _require(0 <= i.min_share < 1, "inference.min_share", i.min_share, "must be in [0, 1)")
        if energy_name is not None:
            _require(energy_name in PREDICTORS, "inference", "z_sweep", f"needs an energy that decodes its predictions "
                     f"({', '.join(PREDICTORS)}), "
                     f"not energy={energy_name}; use inference=grid or gradient")
    if i.name == "grid":
        _require(i.points >= 2, "inference.points", i.points, "must be >= 2")
    if i.name == "langevin":
        _positive(i, "inference", "chains", "steps", "step_size", "beta_start", "beta_end")
        _require(i.anneal in ("constant", "linear", "exponential", "cosine"), "inference.anneal", i.anneal,
                 "must be constant, linear, exponential or cosine")
        _require(i.grad_clip is None or i.grad_clip > 0, "inference.grad_clip", i.grad_clip, "must be > 0 or null")
    if i.name == "dfo":
        _positive(i, "inference", "starts", "samples", "iters", "sigma", "temperature")
        _require(0 < i.shrink <= 1, "inference.shrink", i.shrink, "must be in (0, 1]")
    if i.name == "cem":
        _positive(i, "inference", "starts", "samples", "iters", "sigma")
        _require(0 < i.elite <= 1, "inference.elite", i.elite, "must be in (0, 1]")
    if i.name == "dp" and energy_name is not None:
        _require(energy_name in CHAIN_ENERGIES, "inference", "dp", "needs a chain-structured energy over discrete "
                 f"sequences (a sum of unary and pairwise terms), not energy={energy_name}; use inference=grid or gradient")
    if i.name == "gradient":
        _positive(i, "inference", "starts", "steps", "lr")
        _non_negative(i, "inference", "lr_min", "tol")
        _require(i.optimizer in ("adam", "sgd"), "inference.optimizer", i.optimizer, "must be adam or sgd")


Z_KINDS = ("discrete", "box", "circle", "sphere")
METHODS = ("auto", "enumerate", "quadrature", "monte_carlo", "minimize")


def _validate_latent(e) -> None:
    """energy.z, energy.free_energy and energy.prior of a latent energy."""
    z, f = e.z, e.free_energy
    _require(z.kind in Z_KINDS, "energy.z.kind", z.kind, f"must be one of {', '.join(Z_KINDS)}")
    if z.kind == "discrete":
        _require(z.k >= 1, "energy.z.k", z.k, "must be >= 1")
    if z.kind in ("box", "sphere"):
        _require(z.dim >= (2 if z.kind == "sphere" else 1), "energy.z.dim", z.dim,
                 "must be >= 2 for a sphere" if z.kind == "sphere" else "must be >= 1")
    if z.kind == "box":
        _require(z.low < z.high, "energy.z.low", z.low, f"must be below energy.z.high={z.high}")
    _non_negative(z, "energy.z", "reg")
    _require(e.prior in ("none", "l2", "learned"), "energy.prior", e.prior, "must be none, l2 or learned")
    if e.name not in DECODERS:
        _require(e.prior == "none", "energy.prior", e.prior, f"R(x, z) belongs to decoder energies; energy={e.name} has none")
    if e.prior == "l2":
        _require(z.kind == "box", "energy.prior", "l2", f"R(z) = reg ||z||^2 needs a box z, not energy.z.kind={z.kind}")
    _require(f.eliminate in ("softmin", "min"), "energy.free_energy.eliminate", f.eliminate, "must be softmin or min")
    _require(f.method in METHODS, "energy.free_energy.method", f.method, f"must be one of {', '.join(METHODS)}")
    if f.method == "enumerate":
        _require(z.kind == "discrete", "energy.free_energy.method", f.method, "needs a discrete z")
    if f.method in ("quadrature", "monte_carlo", "minimize"):
        _require(z.kind != "discrete", "energy.free_energy.method", f.method, "is for a continuous z; use enumerate")
    if f.method == "quadrature":
        _require(z.kind in ("box", "circle"), "energy.free_energy.method", f.method, "needs a box or circle z")
    if f.method == "minimize":
        _require(f.eliminate == "min", "energy.free_energy.method", f.method, "gives F_inf only: add energy.free_energy.eliminate=min")
    _positive(f, "energy.free_energy", "points", "samples", "restarts", "steps", "lr")


def _validate_video(d) -> None:
    """dataset=video: sizes the generator can draw (a file's own sizes are checked when it loads)."""
    _positive(d, "dataset", "context", "moves", "sprite_size", "speed")
    _require(d.sprite in SPRITES, "dataset.sprite", d.sprite, f"must be one of {', '.join(SPRITES)}")
    if d.path is None:
        _require(d.size >= 4, "dataset.size", d.size, "must be >= 4")
        _require(d.sprite_size < d.size, "dataset.sprite_size", d.sprite_size, f"must be below dataset.size={d.size}")
        _require(d.noise <= 1, "dataset.noise", d.noise, "must be <= 1 (pixels are in [0, 1])")
        spread = (d.moves - 1) * max(1, round(d.speed))  # rows between the first and the last move
        _require(spread <= d.size - d.sprite_size, "dataset.moves", d.moves,
                 f"moves {max(1, round(d.speed))} pixels apart span {spread} rows; a sprite of {d.sprite_size} "
                 f"pixels in {d.size} rows leaves room for {d.size - d.sprite_size}")


def _validate_translation(d) -> None:
    """dataset=translation: the grammar's sizes and the exact-match tolerance."""
    _non_negative(d, "dataset", "eps")
    _require(d.max_valid >= 1, "dataset.max_valid", d.max_valid, "must be >= 1")
    for key in ("adjective_rate", "adverb_rate"):
        _require(0 <= d[key] <= 1, f"dataset.{key}", d[key], "must be in [0, 1]")
