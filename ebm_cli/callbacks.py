"""Hydra callbacks (Hydra stays at the edge, with cli.py): refuse a bad config before Hydra creates or
overwrites any run folder; write the summary of a sweep."""

import copy
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Set

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ebm_cli.errors import Rejected, UserError, one_line
from ebm_cli.runtime.folder_lock import hold, release_all
from ebm_cli.runtime.run_folder import check_sweep_folder, too_long_name, write_json
from ebm_cli.runtime.summary import print_summary, summarise

log = logging.getLogger("ebm_cli")

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def task_overrides(hydra_node) -> List[str]:
    """The command line's overrides as typed: `inference.k=${energy.z.k}` stays that text (iterating
    the node would resolve it as an interpolation, and fail for a key that does not exist)."""
    return [str(o) for o in OmegaConf.to_container(hydra_node.overrides.task, resolve=False)]


def resume_command(hydra_node, run_dir) -> str:
    """The command that continues this run where it stopped: ebm-run with the same --config-dir and
    overrides, trainer.resume=auto and the run's folder (shell-quoted, ready to paste)."""
    import shlex

    folders = [s.path for s in hydra_node.runtime.config_sources
               if s.provider == "command-line" and s.schema == "file"]
    kept = [o for o in task_overrides(hydra_node) if not o.lstrip("+").startswith("trainer.resume=")]
    name = hydra_node.job.get("config_name") or "config"
    quoted_dir = str(run_dir).replace("\\", "\\\\").replace("'", "\\'")  # Hydra's own quoting: , = [ ] are literal
    words = ["ebm-run", *(f"--config-dir={folder}" for folder in folders),
             *([f"--config-name={name}"] if name != "config" else []), *kept, "trainer.resume=auto",
             f"hydra.run.dir='{quoted_dir}'"]
    return " ".join(shlex.quote(word) for word in words)


def trusted_targets(hydra_node) -> Set[str]:
    """The classes a checkpoint of another run may name (runtime/trust.py): those of the yaml files of
    this command's --config-dir."""
    from ebm_cli.runtime.trust import targets_in_config_dirs

    folders = [s.path for s in hydra_node.runtime.config_sources
               if s.provider == "command-line" and s.schema == "file"]
    return targets_in_config_dirs(folders)


def _inside(path: str, folder: Path) -> bool:
    resolved, root = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return resolved == root or root in resolved.parents


def check_resume_has_a_folder(config: DictConfig) -> None:
    """`ebm-run ... trainer.resume=auto` typed without hydra.run.dir would continue nothing: every
    command gets a new, empty folder. Refused in one line naming the interrupted runs under the
    outputs folder (the latest first, those of the same overrides marked), never a silent fresh run."""
    overrides = task_overrides(config.hydra)
    if config.task.name != "train" or "trainer.resume=auto" not in [o.lstrip("+") for o in overrides]:
        return
    run_dir = Path(str(config.hydra.run.dir))
    given = any(str(o).lstrip("+").split("=", 1)[0] == "hydra.run.dir" for o in config.hydra.overrides.hydra)
    if given or (run_dir / "checkpoints").exists():
        return
    mine = sorted(o for o in overrides if not o.lstrip("+").startswith("trainer.resume="))
    found = []
    for folder in run_dir.parent.parent.glob("*/*"):  # outputs/<day>/<time>, the default layout
        try:
            status = json.loads((folder / "metrics.json").read_text()).get("status")
        except (OSError, ValueError):
            status = None
        if status == "completed" or not (folder / "checkpoints").is_dir():
            continue
        try:
            theirs = sorted(str(o) for o in OmegaConf.load(folder / ".hydra" / "overrides.yaml")
                            if not str(o).startswith("trainer.resume="))
        except Exception:  # noqa: BLE001 - an unreadable record: not the same overrides
            theirs = None
        found.append((theirs == mine, folder.stat().st_mtime, folder))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    choices = [f"{folder}{' (these overrides)' if same else ''}" for same, _, folder in found[:3]]
    raise UserError("trainer.resume=auto continues the run in hydra.run.dir, and none was given (this command's "
                    "own folder would be new and empty): add hydra.run.dir=<the run's folder>; "
                    + (f"interrupted runs, latest first: {', '.join(choices)}" if choices
                       else f"no interrupted run under {run_dir.parent.parent}"))


def check_hydra_outputs(config: DictConfig, job_dir: Path) -> None:
    """What Hydra itself writes for a job stays inside the job's folder: `.hydra/` (output_subdir) and
    the log files of hydra.job_logging. A path that leaves it would rewrite another run's files."""
    subdir = config.hydra.output_subdir
    if subdir is not None and not _inside(os.path.join(job_dir, str(subdir)), job_dir):
        raise UserError(f"hydra.output_subdir={subdir}: must be a folder inside the run folder (a relative path "
                        "without '..')")
    hydra_node = copy.deepcopy(config.hydra)
    with read_write(hydra_node), open_dict(hydra_node):
        hydra_node.runtime.output_dir = os.path.abspath(job_dir)
    handlers = OmegaConf.to_container(OmegaConf.create({"hydra": hydra_node}).hydra.job_logging, resolve=True) or {}
    for name, handler in (handlers.get("handlers") or {}).items():
        filename = handler.get("filename") if isinstance(handler, dict) else None
        if filename and not _inside(str(filename), job_dir):
            raise UserError(f"hydra.job_logging.handlers.{name}.filename={filename}: must be inside the run folder "
                            f"{job_dir} (e.g. ${{hydra.runtime.output_dir}}/{Path(str(filename)).name})")


def _refused(exc: BaseException, where: str = "") -> Rejected:
    """Rejected carries the error past Hydra (which would turn an Exception from a callback into a
    warning and go on to create the folder)."""
    message = str(exc) if isinstance(exc, UserError) else one_line(exc)
    return Rejected(UserError(f"{where}{message}", getattr(exc, "exit_code", 1)))


class ValidateConfig(Callback):
    """Every check before anything is written: on_run_start runs after composition and before Hydra
    creates the run folder; on_multirun_start before the sweep folder exists."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from ebm_cli.tasks.checks import check_before_writing  # imported here: `ebm-run --help` stays fast

        try:
            check_resume_has_a_folder(config)
            check_hydra_outputs(config, Path(str(config.hydra.run.dir)))
            check_before_writing(config, Path(str(config.hydra.run.dir)), task_overrides(config.hydra),
                                 trusted_targets(config.hydra))
        except SystemExit as exit_:  # a component's sys.exit() while it is checked: a refusal, not a success
            raise _refused(UserError(f"a component called sys.exit({exit_.code!r}) while the run was checked: it "
                                     "must raise an exception, not exit")) from None
        except Exception as exc:
            raise _refused(exc) from None
        from ebm_cli.tasks.checks import check_folder_for

        try:  # held from here, before Hydra's first write, to the end of the command
            hold(Path(str(config.hydra.run.dir)), "run")
            # again, now that no other command can write there: one may have finished into it meanwhile
            check_folder_for(config, Path(str(config.hydra.run.dir)))
        except UserError as exc:
            release_all()
            raise _refused(exc) from None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """The sweep folder must be new, and every job of a grid sweep (Hydra's basic sweeper) must pass
        its checks: a sweep with a bad job is refused as a whole, with nothing written. (An Optuna
        search draws its trials as it goes: each trial is checked when it starts, and fails alone.)"""
        from ebm_cli.tasks.checks import check_before_writing

        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            check_sweep_folder(sweep_dir)
            jobs = grid_jobs(config)
            raw_subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
            if not jobs:  # a sweeper that draws its jobs as it goes (optuna): its first job stands for them
                if "hydra.job.num" not in raw_subdir and "hydra.job.id" not in raw_subdir:
                    raise UserError(f"hydra.sweep.subdir={raw_subdir}: must contain ${{hydra.job.num}} (or "
                                    "${hydra.job.id}), or every job of the sweep writes into the same folder")
                check_hydra_outputs(config, job_folder(config, 0, sweep_dir))
        except Exception as exc:
            raise _refused(exc) from None
        loader = GlobalHydra.instance().config_loader()
        folders: Dict[str, int] = {}
        for number, overrides in enumerate(jobs):
            where = f"sweep job {number} ({' '.join(overrides)}): "
            try:
                job = loader.load_sweep_config(config, list(overrides))
                folder = job_folder(job, number, sweep_dir)
                if str(folder) in folders:
                    raise UserError(f"hydra.sweep.subdir={raw_subdir}: jobs {folders[str(folder)]} and {number} would "
                                    f"both write into {folder} (put ${{hydra.job.num}} in it)")
                folders[str(folder)] = number
                too_long = too_long_name(folder)
                if too_long:  # a long sweep value in the job's name (hydra.job.override_dirname)
                    raise UserError(f"its folder has {too_long}; shorten the values, or set "
                                    "hydra.sweep.subdir=${hydra.job.num}")
                check_hydra_outputs(job, folder)
                check_before_writing(job, sweep_dir / f"job{number}", overrides, trusted_targets(config.hydra))
            except Exception as exc:
                raise _refused(exc, where) from None
        try:
            hold(sweep_dir, "sweep")
            check_sweep_folder(sweep_dir)  # again, now held: another sweep may have begun into it meanwhile
        except UserError as exc:
            release_all()
            raise _refused(exc) from None


def job_folder(job: DictConfig, number: int, sweep_dir: Path) -> Path:
    """The folder Hydra's launcher gives job `number` (sweep.dir/sweep.subdir); UserError when the
    subdir leaves the sweep folder."""
    node = copy.deepcopy(job)
    with read_write(node), open_dict(node):
        node.hydra.job.num, node.hydra.job.id = number, str(number)
    subdir = str(OmegaConf.select(node, "hydra.sweep.subdir"))
    folder = Path(os.path.abspath(os.path.join(sweep_dir, subdir)))
    if not _inside(str(folder), sweep_dir) or folder == Path(os.path.abspath(sweep_dir)):
        raise UserError(f"hydra.sweep.subdir={subdir}: must be a folder inside the sweep folder {sweep_dir} (a "
                        "relative path without '..')")
    return folder


def grid_jobs(config: DictConfig) -> List[List[str]]:
    """The overrides of every job a grid sweep will run (as Hydra's basic sweeper expands them); none
    for other sweepers."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return []
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    parsed = parser.parse_overrides(params + task_overrides(config.hydra))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


class SweepSummary(Callback):
    """Every job's metrics.json carries its overrides (a failed job's holds its error); at the end of
    a multirun, one table of all jobs sorted by the objective, and summary.csv in the sweep folder.

    on_job_end runs inside the job, on_multirun_end in the launching process, so the jobs talk
    to the summary through their metrics.json files (this also works with remote launchers).
    """

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        path = Path(config.hydra.runtime.output_dir) / "metrics.json"
        if config.task.name != "train" or not path.is_file() or int(os.environ.get("RANK") or 0) > 0:
            return  # (a data-parallel job's other tasks: the first one records it)
        record = json.loads(path.read_text())
        record.update(overrides=task_overrides(config.hydra), job=config.hydra.job.get("num"))
        try:
            write_json(path, record)
        except UserError as err:  # the job's own result stands; Hydra would turn a raise into a warning
            log.warning("%s (the job's overrides are not added to it)", err)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if config.task.name != "train":
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarise(sweep_dir, config.objective, config.objective_direction)
        if rows:
            print_summary(rows, sweep_dir, config.objective)
