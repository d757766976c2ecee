"""Checkpoints: atomic save (temp file, fsync, rename) keeping the previous one; safe load."""

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ebm_cli.errors import UserError
from ebm_cli.runtime.disk import cannot_write, is_disk_error, remove_quietly

LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"

log = logging.getLogger("ebm_cli")


def rng_state() -> Dict[str, Any]:
    """Every RNG that training draws from (numpy's as a tensor: weights_only loads tensors)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state(), "numpy": _numpy_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, state: Dict[str, Any], name: str = LAST) -> Path:
    """Write folder/last.pt (or folder/<name>) atomically; the last.pt it replaces becomes previous.pt.

    last.pt is never absent once written, not even for a moment (a reader polling it, or a kill in
    between, finds the old one or the new one): the new file is written under a temporary name and
    flushed to disk; the old last.pt is linked (or copied) to previous.pt's temporary name and that
    renamed over previous.pt; only then is the new file renamed over last.pt. Each rename is atomic.
    A failed write (disk full, ...) removes the temporary files and raises a UserError; the old
    checkpoints stay as they were.
    """
    last, tmp = folder / name, folder / f".{name}.tmp"
    try:
        # the checkpoints folder, not its parents: a run folder removed under the run is not re-made
        folder.mkdir(exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, RuntimeError) as exc:  # torch's zip writer reports a full disk as a RuntimeError
        remove_quietly(tmp)
        if not isinstance(exc, OSError) and not is_disk_error(exc):
            raise
        raise cannot_write(f"checkpoint {last}", exc) from None
    try:
        if name == LAST and last.exists():
            _keep_as_previous(last, folder)
        os.replace(tmp, last)
    except OSError as exc:  # a folder made read-only or removed under the run
        remove_quietly(tmp)
        raise cannot_write(f"checkpoint {last}", exc) from None
    _fsync_dir(folder)
    return last


def _keep_as_previous(last: Path, folder: Path) -> None:
    """previous.pt := the current last.pt, with last.pt left in place (a second name for its file)."""
    staged = folder / f".{PREVIOUS}.tmp"
    staged.unlink(missing_ok=True)
    try:
        os.link(last, staged)
    except OSError:  # a file system without hard links: a copy
        try:
            shutil.copyfile(last, staged)
        except OSError:
            remove_quietly(staged)
            raise
    os.replace(staged, folder / PREVIOUS)


def remove_stale_temporaries(folder: Path) -> None:
    """A temporary file left by a save that was killed half-way is never a usable checkpoint."""
    for tmp in folder.glob(".*.tmp"):
        log.warning("removing %s, left by an interrupted save", tmp)
        tmp.unlink()


def load_latest(folder: Path, map_location: Optional[str] = "cpu") -> Tuple[Optional[Dict[str, Any]], Optional[Path]]:
    """The newest checkpoint in folder that loads: last.pt, else previous.pt (with a warning
    naming what is wrong with last.pt). (None, None) when there is none at all; a UserError
    when checkpoints exist but none of them loads."""
    problems = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            return load_checkpoint(path, map_location), path
        except UserError as err:
            log.warning("skipping %s", err)
            problems.append(str(err))
    if problems:
        raise UserError(f"no usable checkpoint in {folder}: " + "; ".join(problems))
    return None, None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: Path, map_location: Optional[str] = "cpu") -> Dict[str, Any]:
    """Load a checkpoint with weights_only=True; a broken file is one clear UserError."""
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, foreign pickles all land here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} cannot be read ({first[:200]})") from None
    if not isinstance(state, dict) or not {"model", "config", "meta", "step"} <= set(state):
        raise UserError(f"checkpoint {path} is not an ebm-run checkpoint (missing model/config/meta/step)")
    return state


# torch.optim's optimizers whose state holds, per parameter, tensors of the parameter's own shape
# (moments, momentum buffers, accumulators); a user's optimizer may keep other shapes (factored moments)
MIRRORING_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop, torch.optim.Adagrad,
                        torch.optim.Adadelta, torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, torch.optim.ASGD)


def restore(path: Path, state: Dict[str, Any], energy, optimizer=None) -> None:
    """Load the weights (and optimiser state) of `state`, read from `path`, all or nothing: weights
    or optimiser moments that are not finite, or moments of another shape than their parameter, are
    refused here (served or trained on, they would give NaN energies, or fail at the first step after
    the run had started)."""
    try:
        energy.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
        first = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]  # torch's "Error(s) ...:"
        raise UserError(f"checkpoint {path} does not match this run's energy or optimiser ({first[:300]})") from None
    bad = [name for name, t in energy.state_dict().items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise UserError(f"checkpoint {path}: non-finite weights in {bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
                        + ": the run diverged or the file was changed; use another checkpoint")
    if optimizer is not None:
        _check_optimizer_state(path, optimizer, energy)


def _check_optimizer_state(path: Path, optimizer, energy) -> None:
    """torch's load_state_dict matches the parameter groups, not the saved tensors: check those."""
    names = {id(p): name for name, p in energy.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if not isinstance(value, torch.Tensor) or value.dim() == 0:
                    continue
                where = f"the optimiser's {key} of {names.get(id(param), 'a parameter')}"
                if isinstance(optimizer, MIRRORING_OPTIMIZERS) and value.shape != param.shape:
                    raise UserError(f"checkpoint {path} does not match this run's energy or optimiser ({where} has "
                                    f"shape {tuple(value.shape)}, the parameter {tuple(param.shape)})")
                if value.is_floating_point() and not torch.isfinite(value).all():
                    raise UserError(f"checkpoint {path}: non-finite values in {where}: the file was changed; use "
                                    "another checkpoint")


def find_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run kept, for task=infer / task=landscape: best.pt of a run trained with
    trainer.keep=best (the weights its test metrics were measured on), else last.pt."""
    if not run_dir.is_dir():
        raise UserError(f"run_dir: no such folder: {run_dir}")
    if (run_dir / "checkpoints" / BEST).is_file():
        return run_dir / "checkpoints" / BEST
    path = run_dir / "checkpoints" / LAST
    if not path.is_file() and (run_dir / "checkpoints" / PREVIOUS).is_file():
        return run_dir / "checkpoints" / PREVIOUS  # a run killed by an older version between its renames
    if not path.is_file():
        raise UserError(f"run_dir: {run_dir} has no checkpoints/{LAST} (is it a finished ebm-run training run?)")
    return path
