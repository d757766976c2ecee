"""The `ebm-run` entry point: the only Hydra-decorated function, dispatching on cfg.task.

Errors a user can fix (a misspelled key, a wrong type, an impossible value, a missing file, cuda
where there is none) are printed as one line on stderr with a non-zero exit code. The full
traceback appears only with HYDRA_FULL_ERROR=1.
"""

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Optional

import hydra
import rich
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ebm_cli.callbacks import resume_command, task_overrides, trusted_targets
from ebm_cli.errors import NotResumable, Rejected, UserError, is_config_error, one_line
from ebm_cli.runtime import summary
from ebm_cli.runtime.disk import cannot_write, is_disk_error, os_error_in
from ebm_cli.runtime.folder_lock import held_folder, release_all
from ebm_cli.runtime.signals import (SWEEP_PARENT, OutsideTheLoop, Preempted, Stopped, as_preempted, end_as_signalled,
                                     is_sweep_worker, mark_as_sweep_parent, runs_in_the_command, watch_parent)
from ebm_cli.schema import register_configs

log = logging.getLogger("ebm_cli")

register_configs()


def run_task(cfg: DictConfig, run_dir: Path, overrides=(), trusted=()) -> Optional[float]:
    """Run cfg.task in run_dir; returns the sweep objective (cfg.objective) for training runs: the
    kept weights' value on the validation split, or the test metric where they were not scored there.

    overrides: the command line's; infer and landscape use the run's own inference method
    unless it names another (inference=...), with its inference.<key>=... applied. trusted: the
    classes a finished run's stored config may name besides ebm_cli's (runtime/trust.py).
    """
    from ebm_cli.tasks import compare, infer, train  # imported here so `ebm-run --help` stays fast

    name = cfg.task.name
    if name == "train":
        metrics = train.train(cfg, run_dir, changed=overrides)
        key = summary.metric_key(metrics, cfg.objective)
        if key is None:
            raise UserError(f"objective={cfg.objective}: not a metric of this run (one of {', '.join(metrics)})")
        value, split = summary.sweep_objective(summary.read_record(run_dir), cfg.objective)
        if split == "validation":
            return value  # a sweep picks by validation, never by the test
        if _sweeping:
            log.warning("objective=%s: the kept weights were not scored on a validation split (trainer.eval_every=0, "
                        "trainer.keep=last, or the run ended before its first evaluation): the sweep compares this "
                        "job by its test metric", cfg.objective)
        return metrics[key]
    if name == "infer":
        infer.infer(cfg, overrides, trusted, out_dir=run_dir)
        return None
    if name == "landscape":
        infer.landscape(cfg, run_dir, overrides, trusted)
        return None
    if name == "compare_inference":
        compare.compare_inference(cfg, run_dir, trusted)
        return None
    if name == "bench":
        from ebm_cli.bench import run_bench  # imported here: only the bench needs it

        run_bench(cfg, run_dir)
        return None
    raise UserError(f"task.name={name}: unknown task")


_failures = []  # errors of this process's jobs, reported by main() as one line and an exit code
_sweeping = []  # non-empty when this process ran jobs of a multirun (their failures exit with 1)


@hydra.main(version_base="1.3", config_path="pkg://ebm_cli.configs", config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        _sweeping.append(True)
    worker = is_sweep_worker()  # a joblib sweep's worker process: it stops with its parent
    if cfg.task.name == "train" and _follows_rank_0():  # a submitit job's task > 0: it trains with task 0
        return None
    if worker:
        watch_parent()
    try:
        try:
            # in a worker, as in main(): a signal outside the training steps ends the job in one line
            with OutsideTheLoop() if worker else contextlib.nullcontext():
                return run_task(cfg, run_dir, task_overrides(hydra_cfg), trusted_targets(hydra_cfg))
        except SystemExit as exit_:  # a component's sys.exit() is a failure of the run, not its success
            raise UserError(f"the run's code called sys.exit({exit_.code!r}) during task={cfg.task.name}: a component "
                            "must raise an exception, not exit") from None
        finally:
            _release_followers()  # a submitit job's task 0 that stopped before its ranks met
    except (Exception, Stopped, KeyboardInterrupt) as caught:
        exc = _disk_error_named(as_preempted(caught, task=cfg.task.name), run_dir)
        if isinstance(exc, Preempted) and cfg.task.name == "train":  # a sweep's job too: the command that continues it
            exc = exc.continued_by(resume_command(hydra_cfg, run_dir))
        _log_to_file(one_line(exc))
        record_failure(run_dir, exc)
        # Returning normally keeps Hydra from adding lines of its own and, in a sweep, lets the
        # other jobs and the summary run (Hydra's basic sweeper stops at a raised error).
        _failures.append(exc)
        if isinstance(exc, Preempted) and worker:
            end_as_signalled(exc.signal_name)  # its job saved: the worker ends as the signal asked
        if isinstance(exc, Preempted) and hydra_cfg.mode == RunMode.MULTIRUN and runs_in_the_command():
            raise Stopped(exc.signal_name or "SIGINT", said=True)  # the basic launcher's sweep: no later job starts
        return float("nan")  # a sweeper that optimises (optuna) records the trial as failed


def _release_followers() -> None:
    """torchrun's (or a submitit job's) rank 0 that trained nothing: the other ranks stop waiting."""
    if os.environ.get("RANK") == "0" and int(os.environ.get("WORLD_SIZE") or 1) > 1:
        from ebm_cli.training.distributed import release_followers

        with contextlib.suppress(Exception):  # the command's own outcome is what it reports
            release_followers()


def _follows_rank_0() -> bool:
    """In a submitit job of several tasks, the tasks other than the first join the first's run
    (training/distributed.py) and write nothing of their own; True once such a task is done."""
    from ebm_cli.training.distributed import follow_rank_0, submitit_ranks

    launch = submitit_ranks()
    if launch is None or launch[0] == 0:
        return False
    from ebm_cli.tasks.train import train

    follow_rank_0(*launch[:2], train)
    return True


def version_line() -> str:
    """ebm-run's version, and those of what a run depends on."""
    from importlib.metadata import PackageNotFoundError, version

    from ebm_cli import __version__

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return (f"ebm-run {__version__} (torch {of('torch')}, hydra-core {of('hydra-core')}, "
            f"Python {sys.version.split()[0]})")


def _disk_error_named(exc: Exception, folder: Optional[Path] = None) -> Exception:
    """A write the disk refused outside the runner's own writers (Hydra's .hydra/, a library's file):
    cannot_write naming the file, or else the command's folder."""
    if isinstance(exc, UserError) or not is_disk_error(exc):
        return exc
    if folder is None:  # the command's run (or sweep) folder, held since the checks
        folder = held_folder()
    return cannot_write(getattr(os_error_in(exc), "filename", None) or folder or "the run folder", exc)


def record_failure(run_dir: Path, exc: BaseException) -> None:
    """metrics.json of a job that failed before training wrote its own (diverged, preempted)."""
    from ebm_cli.runtime.run_folder import write_json

    path = run_dir / "metrics.json"
    if isinstance(exc, NotResumable):  # the interrupted run stays resumable once a good checkpoint is back
        return
    if run_dir.is_dir() and not path.exists():  # stopped by a signal outside the steps: resumable, said so
        with contextlib.suppress(UserError):  # a disk that refused the run's writes may refuse this one too
            write_json(path, {"status": "preempted" if isinstance(exc, Preempted) else "failed", "error": one_line(exc)})


def _log_to_file(message: str) -> None:
    """Put the error in the run's log file (the console gets main()'s one line instead)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def expand_home(arg: str) -> str:
    """`dataset.path=~/data.csv` with ~ as the home folder, as a shell expands an assignment: the
    shell leaves ~ alone after `dataset.path=` (not a variable name), and Hydra's grammar refuses it.
    Each ~ that starts a value, or an item of a sweep's comma list, followed by / or nothing;
    `~key=...` (Hydra's deletion of a key) is left as it is."""
    key, eq, value = arg.partition("=")
    if not eq or arg.startswith("~") or "~" not in value:
        return arg
    return key + eq + re.sub(r"(?:^|(?<=,))~(?=/|,|$)", lambda _: os.path.expanduser("~"), value)


def main() -> None:
    """Console script `ebm-run` (and `python -m ebm_cli`)."""
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        print("ebm-run: error: the working directory was removed; cd into an existing folder and run again", file=sys.stderr)
        sys.exit(1)
    # A user's own components (`_target_: my_module.MyEnergy`) live next to where they run ebm-run;
    # a console script does not put the working directory on sys.path, so the runner does.
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    sys.argv[1:] = [expand_home(arg) for arg in sys.argv[1:]]
    if sys.argv[1:] == ["--version"]:  # ebm-cli's own, not Hydra's
        print(version_line())
        return
    if int(os.environ.get("RANK") or 0) > 0 and int(os.environ.get("WORLD_SIZE") or 1) > 1:
        from ebm_cli.tasks.train import train  # torch: only here
        from ebm_cli.training.distributed import follow_rank_0, launched

        launch = launched()
        if launch is not None:  # torchrun's rank > 0: rank 0 runs the command, this one trains with it
            try:
                follow_rank_0(*launch[:2], train)
            except BaseException as exc:  # noqa: B902 - torchrun shows every rank's stderr: one line each
                print(f"ebm-run rank {launch[0]}: {one_line(exc) if str(exc) else type(exc).__name__}", file=sys.stderr)
                sys.exit(1)
            return
    # A log file on a full or removed disk: no "--- Logging error ---" tracebacks (the run's own
    # writes report the disk in one line)
    logging.raiseExceptions = False
    asked = os.environ.get("HYDRA_FULL_ERROR")
    show_traceback = asked == "1"
    console = rich.get_console()
    if not console.is_terminal:  # a log file or pipe: wide lines rather than wrapped tables and logs
        console.width = max(console.width, 140)
    _failures.clear()  # main() may run more than once in a process (tests, notebooks)
    _sweeping.clear()
    summary.failed_jobs.clear()
    # Let errors reach us instead of Hydra's multi-line report, so we can print one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    parent = os.environ.get(SWEEP_PARENT)
    mark_as_sweep_parent()
    try:
        with OutsideTheLoop():
            hydra_main()
    except Rejected as rejected:
        _exit_with(rejected.error, show_traceback)
    except (Stopped, KeyboardInterrupt) as stopped:  # a signal during Hydra's own work, or a sweep's
        if not getattr(stopped, "said", False):
            _exit_with(as_preempted(stopped, began=held_folder() is not None), show_traceback)
    except Exception as exc:
        _exit_with(_disk_error_named(exc), show_traceback)
    finally:
        release_all()  # the folders this command held (the process's end would release them too)
        _release_followers()
        for name, value in (("HYDRA_FULL_ERROR", asked), (SWEEP_PARENT, parent)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    stop = next((e for e in _failures if isinstance(e, Preempted)), None)
    if stop is not None and _sweeping:  # a sweep stopped by a signal (in its job): the job's line, exit 75
        _exit_with(Preempted(f"sweep stopped, its later jobs not started: {stop.stem}", stop.signal_name, stop.command),
                   show_traceback)
    if _failures:  # a single run exits with its error's own code; a sweep with a failed job with 1
        error = _failures[0]
        _exit_with(UserError(one_line(error)) if _sweeping else error, show_traceback)
    if summary.failed_jobs:  # jobs that ran in other processes (joblib, submitit)
        _exit_with(UserError(f"{len(summary.failed_jobs)} job(s) failed, first {summary.failed_jobs[0]}"), show_traceback)


def _exit_with(exc: BaseException, show_traceback: bool) -> None:
    if show_traceback:
        raise exc
    hint = "" if isinstance(exc, UserError) or is_config_error(exc) else " [HYDRA_FULL_ERROR=1 shows the traceback]"
    print(f"ebm-run: error: {one_line(exc)}{hint}", file=sys.stderr)
    sys.exit(exc.exit_code if isinstance(exc, UserError) else 1)


if __name__ == "__main__":
    main()
