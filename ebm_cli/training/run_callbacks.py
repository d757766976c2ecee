"""The training run's own callbacks (training/callbacks.py's hooks), after the config's (callbacks=):
the Training/* scalars, the landscape figures, validation with early stopping, and the periodic
checkpoint, in that order at the end of every step, then the stop on a signal; the divergence
report (when a step diverges) and the collapse check (at the end). tasks/train.py adds them; each reaches the run
through the Trainer (`tb`, `sync`, `last_beta`, `last_lr`) and through what it is built with.
"""

import copy
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from ebm_cli.plots.figures import render
from ebm_cli.runtime.checkpoint import BEST
from ebm_cli.runtime.summary import metric_key
from ebm_cli.tasks.objective import TIMINGS
from ebm_cli.tasks.evaluate import evaluate_model
from ebm_cli.runtime.run_folder import write_json
from ebm_cli.runtime.signals import Preempted, StopSignals
from ebm_cli.tasks.spread import energy_spread, is_flat
from ebm_cli.training.callbacks import Callback
from ebm_cli.training.checkpointing import Checkpointer
from ebm_cli.training.trainer import Diverged

log = logging.getLogger("ebm_cli")


def due(step: int, every: int, last: int) -> bool:
    """Every `every` steps (0: never), and at the last step."""
    return step == last or bool(every and step % every == 0)


class ScalarLogging(Callback):
    """Training/*: the step's values, beta, the learning rate of the update and the energy's spread over
    the y box (energy_range, for the collapse check), every `every` steps and at the last. Rank 0."""

    def __init__(self, every: int, last_step: int, evaluated: torch.nn.Module, data, device: torch.device):
        self.every, self.last_step, self.evaluated, self.data, self.device = every, last_step, evaluated, data, device

    def on_step_end(self, trainer, step: int, stats: Dict[str, float]) -> None:
        if trainer.sync.is_main and due(step, self.every, self.last_step):
            spread = energy_spread(self.evaluated, self.data, self.device, with_gap=False)  # None for token sequences
            trainer.tb.scalars({**stats, "beta": trainer.last_beta, "lr": trainer.last_lr, **(spread or {})}, step, "Training/")


class Landscapes(Callback):
    """The data's figures and texts of the evaluated energy: to TensorBoard every `every` steps during
    training (rank 0), and once at the end with the test candidates (`draw`)."""

    def __init__(self, every: int, last_step: int, data, logger_cfg, device: torch.device, evaluated: torch.nn.Module,
                 baseline_model: Optional[torch.nn.Module] = None):
        self.every, self.last_step, self.data, self.logger_cfg = every, last_step, data, logger_cfg
        self.device, self.evaluated, self.baseline_model = device, evaluated, baseline_model

    def draw(self, tb, step: int, candidates=None):
        """Draw and log the figures (and text summaries) of the energy at this step; both."""
        figs = self.data.figures(self.evaluated, self.logger_cfg, self.device, candidates=candidates,
                                 baseline=self.baseline_model)
        figs = {name: render(fig) for name, fig in figs.items()}  # drawn once, for TensorBoard and the PNGs
        for name, image in figs.items():
            tb.figure(f"landscape/{name}", image, step)
        texts = self.data.texts(self.evaluated, self.logger_cfg, self.device)
        for name, text in texts.items():
            tb.text(f"landscape/{name}", text, step)
        return figs, texts

    def on_step_end(self, trainer, step: int, stats: Dict[str, float]) -> None:
        if trainer.sync.is_main and self.every and step % self.every == 0 and step != self.last_step:
            self.draw(trainer.tb, step)
            trainer.energy.train()


class Validation(Callback):
    """Every `every` steps and at the last: the validation split's loss and metrics (Validation/*), the
    stopper's decisions (training/early_stopping.py: keep best.pt, lower the learning rate, stop by
    setting trainer.should_stop), a plateau scheduler's step, and the callbacks' on_validation_end.
    Rank 0 evaluates; every rank takes the same decisions."""

    def __init__(self, every: int, last_step: int, validation, inference, average, stopper, checkpointer: Checkpointer,
                 beta: Callable[[int], float], objective: str, maximize: bool, seed: int, keep_best: bool,
                 lr_drop: float, patience: int, device: torch.device):
        self.every, self.last_step, self.validation, self.inference = every, last_step, validation, inference
        self.average, self.stopper, self.checkpointer, self.beta = average, stopper, checkpointer, beta
        self.objective, self.maximize, self.seed, self.keep_best = objective, maximize, seed, keep_best
        self.lr_drop, self.patience, self.device = lr_drop, patience, device

    def on_step_end(self, trainer, step: int, stats: Dict[str, float]) -> None:
        if not due(step, self.every, self.last_step):
            return
        b = self.beta(step)
        self.average.set_beta(b)  # a latent energy at that step's beta
        shared = trainer.sync.broadcast(self.measure(trainer, step, b) if trainer.sync.is_main else None)
        scores, objective, decision = shared["scores"], shared["objective"], shared["decision"]
        trainer.validated(objective, self.maximize)  # a plateau scheduler's step
        if decision.lower_lr:
            trainer.lower_lr(self.lr_drop)
            log.info("step %d: no progress on the validation split for %d evaluations: the learning rate goes down "
                     "to %.3g (trainer.lr_drop)", step, self.patience, trainer.lr)
        for callback in trainer.callbacks.values():
            callback.on_validation_end(trainer, step, scores)
        if decision.keep and self.keep_best:
            self.checkpointer.save(step, BEST)
        if decision.stop:
            trainer.should_stop = (f"objective {self.objective} has not improved on the validation split for "
                                   f"{self.patience} evaluations (trainer.patience); the weights of step "
                                   f"{self.stopper.best['step']} are kept")

    def measure(self, trainer, step: int, b: float) -> Dict[str, Any]:
        """The validation loss and metrics (logged), the objective, and the stopper's decision."""
        evaluated, device, val, loss = self.average.evaluated, self.device, self.validation, trainer.loss
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            # the same random draws at every evaluation (a loss that samples negatives): a change of
            # the validation loss is the weights' doing, not the sampler's noise
            torch.manual_seed(self.seed)
            scorer = copy.deepcopy(loss) if loss.state_dict() else loss  # cd's replay buffer stays training's
            val_loss, _ = scorer(evaluated, val.x_train.to(device), val.y_train.to(device), b)
            metrics = evaluate_model(evaluated, self.inference, val, device)["metrics"]
            scores = {k: v for k, v in metrics.items() if k not in TIMINGS}
        evaluated.train()
        trainer.energy.train()
        trainer.tb.scalars({"loss": float(val_loss.detach()), **scores}, step, "Validation/", run="validation")
        key = metric_key(scores, self.objective)
        objective = scores[key] if key else None
        decision = self.stopper.observe(step, objective, float(val_loss.detach()))
        return {"scores": {"loss": float(val_loss.detach()), **scores}, "objective": objective, "decision": decision}


class PeriodicCheckpoint(Callback):
    """checkpoints/last.pt every `every` steps (the last step's is saved by the run itself)."""

    def __init__(self, every: int, last_step: int, checkpointer: Checkpointer):
        self.every, self.last_step, self.checkpointer = every, last_step, checkpointer

    def on_step_end(self, trainer, step: int, stats: Dict[str, float]) -> None:
        if self.every and step % self.every == 0 and step != self.last_step and not trainer.should_stop:
            self.checkpointer.save(step)


class DivergenceReport(Callback):
    """A step that diverged (Diverged: a non-finite value, or one beyond trainer.max_abs; its update
    not applied): divergence.json in the run folder (the step, its values, the last finite ones and
    the seed), to reproduce it. Rank 0."""

    def __init__(self, run_dir: Path, seed: int):
        self.run_dir, self.seed = Path(run_dir), seed
        self.last_healthy: Dict[str, float] = {}

    def on_step_end(self, trainer, step: int, stats: Dict[str, float]) -> None:
        self.last_healthy = {**stats, "step": step}

    def on_exception(self, trainer, step: int, error: BaseException) -> None:
        if isinstance(error, Diverged) and trainer.sync.is_main:
            write_json(self.run_dir / "divergence.json", {"step": step + 1, "values": error.values,
                                                          "last_finite": self.last_healthy, "seed": self.seed})


class CollapseCheck(Callback):
    """At the end: the evaluated energy's spread over the y box at the held-out inputs
    (tasks/spread.py) joins the test metrics, and `collapsed` says whether it is flat at the beta of
    the evaluated weights (beta * energy_range < logger.collapse_below: P_beta(y | x) nearly
    uniform), with a warning. None for token sequences (no box)."""

    def __init__(self, evaluated: torch.nn.Module, data, device: torch.device, collapse_below: float, loss_name: str):
        self.evaluated, self.data, self.device = evaluated, data, device
        self.collapse_below, self.loss_name = collapse_below, loss_name
        self.collapsed: Optional[bool] = None

    def on_train_end(self, trainer, step: int, metrics: Dict[str, float]) -> None:
        spread = energy_spread(self.evaluated, self.data, self.device)
        if spread is None:
            return
        metrics.update(spread)
        beta = trainer.last_beta  # the run sets it to the evaluated weights' beta before the end
        self.collapsed = is_flat(spread["energy_range"], beta, self.collapse_below)
        if self.collapsed:
            log.warning("the energy collapsed: flat over the y box (beta * energy_range = %.3g < "
                        "logger.collapse_below=%g: P_beta(y | x) is nearly uniform; loss=%s)",
                        beta * spread["energy_range"], self.collapse_below, self.loss_name)


class StopOnSignal(Callback):
    """A stop signal (SIGTERM, SIGINT, SIGHUP, SIGUSR1: runtime/signals.StopSignals, which the run holds
    around its loop) to any rank ends the run at the end of the step in which it came: every rank
    saves that step's checkpoint, and the step raises Preempted (exit 75; the run then records
    "preempted" and hands the signal on to a launcher's handler). The last of the run's callbacks:
    the step's validation and periodic checkpoint come first."""

    def __init__(self, signals: StopSignals, checkpointer: Checkpointer):
        self.signals, self.checkpointer = signals, checkpointer

    def on_step_end(self, trainer, step: int, stats: Dict[str, float]) -> None:
        if not trainer.sync.any(self.signals.received is not None):  # a collective: every rank decides alike
            return
        if trainer.sync.any(bool(trainer.should_stop)):  # the run ends at this step anyway (patience): it
            return  # finishes, its final checkpoint saying where it stopped, rather than resume past it
        self.checkpointer.save(step)
        raise Preempted(f"stopped by {self.signals.received or 'a signal to another rank'} at step {step}; "
                        "checkpoint saved, continue with", self.signals.received)
