"""Hydra callbacks (Hydra stays at the edge, with cli.py): refuse a bad config before Hydra creates or
overwrites any run folder; write the summary of a sweep."""

import json
from pathlib import Path
from typing import List

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ebm_cli.errors import Rejected, UserError, one_line
from ebm_cli.runtime.run_folder import check_sweep_folder, write_json
from ebm_cli.runtime.summary import print_summary, summarise

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def task_overrides(hydra_node) -> List[str]:
    """The command line's overrides as typed: `inference.k=${energy.z.k}` stays that text (iterating
    the node would resolve it as an interpolation, and fail for a key that does not exist)."""
    return [str(o) for o in OmegaConf.to_container(hydra_node.overrides.task, resolve=False)]


def _refused(exc: BaseException, where: str = "") -> Rejected:
    """Rejected carries the error past Hydra (which would turn an Exception from a callback into a
    warning and go on to create the folder)."""
    message = str(exc) if isinstance(exc, UserError) else one_line(exc)
    return Rejected(UserError(f"{where}{message}"))


class ValidateConfig(Callback):
    """Every check before anything is written: on_run_start runs after composition and before Hydra
    creates the run folder; on_multirun_start before the sweep folder exists."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from ebm_cli.tasks.checks import check_before_writing  # imported here: `ebm-run --help` stays fast

        try:
            check_before_writing(config, Path(str(config.hydra.run.dir)), task_overrides(config.hydra))
        except Exception as exc:
            raise _refused(exc) from None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """The sweep folder must be new, and every job of a grid sweep (Hydra's basic sweeper) must pass
        its checks: a sweep with a bad job is refused as a whole, with nothing written. (An Optuna
        search draws its trials as it goes: each trial is checked when it starts, and fails alone.)"""
        from ebm_cli.tasks.checks import check_before_writing

        try:
            check_sweep_folder(Path(str(config.hydra.sweep.dir)))
            jobs = grid_jobs(config)
        except Exception as exc:
            raise _refused(exc) from None
        loader = GlobalHydra.instance().config_loader()
        for number, overrides in enumerate(jobs):
            where = f"sweep job {number} ({' '.join(overrides)}): "
            try:
                job = loader.load_sweep_config(config, list(overrides))
                check_before_writing(job, Path(str(config.hydra.sweep.dir)) / f"job{number}", overrides)
            except Exception as exc:
                raise _refused(exc, where) from None


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
        if config.task.name != "train" or not path.is_file():
            return
        record = json.loads(path.read_text())
        record.update(overrides=task_overrides(config.hydra), job=config.hydra.job.get("num"))
        write_json(path, record)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if config.task.name != "train":
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarise(sweep_dir, config.objective, config.objective_direction)
        if rows:
            print_summary(rows, sweep_dir, config.objective)
