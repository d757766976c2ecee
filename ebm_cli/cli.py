"""The `ebm-run` entry point: the only Hydra-decorated function, dispatching on cfg.task.

Errors a user can fix (a misspelled key, a wrong type, an impossible value, a missing file, cuda
where there is none) are printed as one line on stderr with a non-zero exit code. The full
traceback appears only with HYDRA_FULL_ERROR=1.
"""

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ebm_cli.errors import Rejected, UserError
from ebm_cli.schema import register_configs

log = logging.getLogger("ebm_cli")

register_configs()


def run_task(cfg: DictConfig, run_dir: Path) -> Optional[float]:
    """Run cfg.task in run_dir; returns the sweep objective (coverage) for training runs."""
    from ebm_cli import predict, train  # imported here so `ebm-run --help` stays fast

    name = cfg.task.name
    if name == "train":
        metrics = train.train(cfg, run_dir)
        return metrics.get(f"coverage@{cfg.dataset.eps:g}")
    if name == "infer":
        predict.infer(cfg)
        return None
    if name == "landscape":
        predict.landscape(cfg)
        return None
    raise UserError(f"task.name={name}: unknown task")


_failures = []  # errors of a single (non-sweep) run, reported by main() as one line


@hydra.main(version_base="1.3", config_path="pkg://ebm_cli.configs", config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    hydra_cfg = HydraConfig.get()
    try:
        return run_task(cfg, Path(hydra_cfg.runtime.output_dir))
    except Exception as exc:
        _log_to_file(one_line(exc))
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job and goes on with the others
        # A single run: return normally so Hydra adds no lines of its own; main() reports it.
        _failures.append(exc)
        return None


def _log_to_file(message: str) -> None:
    """Put the error in the run's log file (the console gets main()'s one line instead)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def one_line(exc: BaseException) -> str:
    """A single readable line for any error, Hydra's composition errors included."""
    if isinstance(exc, UserError):
        return str(exc)
    import torch  # imported late: `ebm-run --help` need not load it

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return f"GPU out of memory: {str(exc).splitlines()[0]} (reduce trainer.batch_size or the grid sizes)"
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = lines[0] if lines else type(exc).__name__
    if "Available options" in text:
        listing = text.split("Available options", 1)[1].split("Config search path", 1)[0]
        options = [ln for ln in listing.splitlines() if ln.startswith("\t")]
        msg += f" (available: {', '.join(o.strip() for o in options)})"
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        first = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
        if first:
            msg = f"{msg.rstrip('.:')}: {first[0]}"
        keys = _valid_keys(cause)
        if keys:
            msg += f" (valid keys: {', '.join(keys)})"
    if not _is_config_error(exc):
        msg = f"{type(exc).__name__}: {msg}"
    return msg


def _valid_keys(cause: BaseException):
    """For an unknown key, the keys its parent node does have."""
    if "not in" not in str(cause):
        return None
    parent = getattr(cause, "parent_node", None)
    try:
        return [str(k) for k in parent.keys()] if parent is not None else None
    except Exception:
        return None


def main() -> None:
    """Console script `ebm-run` (and `python -m ebm_cli`)."""
    show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Let errors reach us instead of Hydra's multi-line report, so we can print one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except Rejected as rejected:
        _exit_with(rejected.error, show_traceback)
    except KeyboardInterrupt:
        print("ebm-run: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        _exit_with(exc, show_traceback)
    if _failures:
        _exit_with(_failures[0], show_traceback)


def _exit_with(exc: BaseException, show_traceback: bool) -> None:
    if show_traceback:
        raise exc
    hint = "" if isinstance(exc, UserError) or _is_config_error(exc) else " [HYDRA_FULL_ERROR=1 shows the traceback]"
    print(f"ebm-run: error: {one_line(exc)}{hint}", file=sys.stderr)
    sys.exit(exc.exit_code if isinstance(exc, UserError) else 1)


def _is_config_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("hydra", "omegaconf")


if __name__ == "__main__":
    main()
