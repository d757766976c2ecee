"""Hydra callbacks (Hydra stays at the edge, with cli.py): refuse a bad config before Hydra creates or
overwrites any run folder; write the summary of a sweep."""

import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ebm_cli.build import resolve_device
from ebm_cli.errors import Rejected, UserError, one_line
from ebm_cli.runtime.checkpoint import find_checkpoint, load_checkpoint
from ebm_cli.runtime.run_folder import check_run_folder, write_json
from ebm_cli.runtime.summary import print_summary, summarise
from ebm_cli.validate import validate


class ValidateConfig(Callback):
    """on_run_start runs after composition and before run_job creates the run folder."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from ebm_cli.tasks.train import prepare  # imported here: `ebm-run --help` stays fast

        try:
            validate(config)
            resolve_device(config.trainer.device)
            if config.task.name == "train":
                check_run_folder(Path(str(config.hydra.run.dir)), config.trainer.resume)
                prepare(config)  # data, energy, inference, loss, schedule built and checked: nothing fails mid-run
            else:  # infer / landscape read a finished run: a missing or broken checkpoint fails here
                load_checkpoint(find_checkpoint(Path(config.run_dir)))
        except UserError as err:
            raise Rejected(err) from None
        except Exception as exc:  # anything else would become Hydra's warning, and the folder made anyway
            raise Rejected(UserError(one_line(exc))) from None


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
        record.update(overrides=list(config.hydra.overrides.task), job=config.hydra.job.get("num"))
        write_json(path, record)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if config.task.name != "train":
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarise(sweep_dir, config.objective, config.objective_direction)
        if rows:
            print_summary(rows, sweep_dir, config.objective)
