"""Hydra callbacks: refuse a bad config before Hydra creates or overwrites any run folder."""

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ebm_cli.build import resolve_device
from ebm_cli.checkpoint import find_checkpoint, load_checkpoint
from ebm_cli.data.curves import load_curves
from ebm_cli.errors import Rejected, UserError
from ebm_cli.train import check_run_folder
from ebm_cli.validate import validate


class ValidateConfig(Callback):
    """on_run_start runs after composition and before run_job creates the run folder."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            validate(config)
            resolve_device(config.trainer.device)
            if config.task.name == "train":
                load_curves(config.dataset, config.seed)  # a malformed data file fails here, not mid-run
            else:  # infer / landscape read a finished run: a missing or broken checkpoint fails here
                load_checkpoint(find_checkpoint(Path(config.run_dir)))
            if config.task.name == "train":
                check_run_folder(Path(str(config.hydra.run.dir)), config.trainer.resume)
        except UserError as err:
            raise Rejected(err) from None
