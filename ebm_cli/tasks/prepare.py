"""The run a training command builds, every check passed: its components (build_run), its MSE
baseline (trainer.baseline) and its Trainer (optimizer, scheduler, callbacks). The training run and
the pre-run check (tasks/checks.py) both start here."""

from typing import Optional, Tuple

from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau

from ebm_cli.build import Run, build_baseline, build_callbacks, build_optimizer, build_run, build_scheduler
from ebm_cli.core.energy import PredictorEnergy
from ebm_cli.errors import UserError
from ebm_cli.runtime.summary import metric_key
from ebm_cli.tasks.baseline import Baseline
from ebm_cli.tasks.objective import TIMINGS, check_objective, expected_metrics
from ebm_cli.training.trainer import Trainer
from ebm_cli.validate import validate


def prepare(cfg) -> Tuple[Run, Optional[Baseline], Trainer]:
    """The run's components, its MSE baseline (trainer.baseline) and its Trainer (optimizer,
    scheduler, callbacks), every check passed: what a training run needs, and what the pre-run
    callback builds to refuse a bad config early."""
    validate(cfg)
    run = build_run(cfg)
    baseline = None
    if cfg.trainer.baseline and not isinstance(run.energy, PredictorEnergy):  # a regressor is its own baseline
        model = build_baseline(type(run.data), cfg.energy, run.meta)
        if model is None:
            raise UserError(f"trainer.baseline=true: {type(run.data).__name__} data has no feed-forward MSE model "
                            "(for sentences the one-mode baseline of a chain energy is its own run, energy.z.k=1)")
        model = model.to(run.device)
        baseline = Baseline(model, build_optimizer(cfg.optimizer, model.parameters()), cfg.trainer.ema)
    optimizer = build_optimizer(cfg.optimizer, run.energy.parameters())
    trainer = Trainer(run.energy, run.loss, optimizer, build_scheduler(cfg.scheduler, optimizer),
                      build_callbacks(cfg.callbacks, run.energy), max_abs=cfg.trainer.max_abs,
                      precision=cfg.trainer.precision, device=run.device, baseline=baseline)
    if isinstance(trainer.scheduler, OneCycleLR) and cfg.trainer.lr_drops:
        raise UserError(f"trainer.lr_drops={cfg.trainer.lr_drops}: OneCycleLR sets every step's learning rate itself, "
                        "so a plateau cannot lower it; use trainer.lr_drops=0 with it")
    if isinstance(trainer.scheduler, ReduceLROnPlateau) and run.validation is None:
        raise UserError("scheduler: ReduceLROnPlateau steps on the validation objective; it needs trainer.eval_every > 0")
    check_objective(cfg, expected_metrics(run, baseline))
    if run.validation is not None and (cfg.trainer.keep == "best" or cfg.trainer.patience):
        measured = [k for k in expected_metrics(run, None, run.validation) if k not in TIMINGS]
        if metric_key(dict.fromkeys(measured), cfg.objective) is None:
            raise UserError(f"objective={cfg.objective}: not measured on the validation split, which trainer.keep=best "
                            f"and trainer.patience compare by (one of {', '.join(measured)})")
    return run, baseline, trainer
