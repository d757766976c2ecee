"""What a run measures, found before it trains: the metric names it will report (for the objective a
sweep optimises and validation compares by), and the config as a run saves it."""

import copy
from typing import Any, Dict

from omegaconf import OmegaConf

from ebm_cli.core.energy import LatentEnergy
from ebm_cli.core.spaces import is_continuous
from ebm_cli.errors import UserError
from ebm_cli.runtime.summary import metric_key

TIMINGS = ("infer_time_s", "energy_evals", "train_time_s")


def task_config_yaml(cfg) -> str:
    """The config as a training run saves it (resolved, without Hydra's own node)."""
    return OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def expected_metrics(run, baseline, data=None) -> Dict[str, Any]:
    """The names of the metrics this run will report on `data` (default: its test inputs), found
    before training by scoring two inputs' own valid sets as if they were predictions."""
    data = copy.copy(data if data is not None else run.data)
    data.x_test, data.valid, data.valid_mask = data.x_test[:2], data.valid[:2], data.valid_mask[:2]
    scored = data.metrics(data.valid, data.valid_mask)
    names = dict.fromkeys([*scored, *getattr(run.inference, "reports", ()), *TIMINGS])
    if isinstance(run.energy, LatentEnergy):
        names.update(dict.fromkeys(["latent_entropy", "latent_used"]))
    if is_continuous(data.y_space):  # the landscape's spread (tasks/spread.py)
        names.update(dict.fromkeys(["energy_range", "energy_gap"]))
    if baseline is not None:
        names.update(dict.fromkeys(f"baseline_{k}" for k in scored if k != "candidates_per_x"))
    return names


def check_objective(cfg, names: Dict[str, Any]) -> None:
    if metric_key(names, cfg.objective) is None:
        raise UserError(f"objective={cfg.objective}: not a metric of this run (one of {', '.join(names)})")
