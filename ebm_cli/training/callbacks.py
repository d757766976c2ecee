"""Callbacks: code that runs at fixed points of the training loop (`callbacks=` in the config, a
mapping of named `_target_` nodes, as in lightning-hydra-template). The built-ins are the moving
average of the weights (training/ema.py) and gradient-norm clipping; a user's own is a subclass of
Callback in their module, named by `_target_`.

Every hook gets the Trainer (training/trainer.py): its energy, optimizer, scheduler, `tb` (the run's
TensorBoard logger: `trainer.tb.scalars({...}, step, "my/")`, `.figure(tag, fig, step)`), `run_dir`
and `step`. A callback stops the run by setting `trainer.should_stop` to the reason: the run ends at
that step as one stopped by its validation does (final evaluation, figures, status completed).
What a callback returns from state_dict() goes into the checkpoint and comes back through
load_state_dict() on trainer.resume=auto, so that a resumed run is the uninterrupted one.

The training run adds its own after the config's (training/run_callbacks.py): the Training/* scalars,
the landscape figures, validation with early stopping, and the periodic checkpoint; so a config's
callback sees each step's update before they log, evaluate and save it.
"""

import math
from typing import Any, Dict, Optional

import torch

from ebm_cli.errors import require


class Callback:
    """The hooks, in the order they are called; each does nothing unless overridden."""

    def on_train_start(self, trainer) -> None:
        """Before the first step (of this process: after a resume, at the resumed step)."""

    def on_after_backward(self, trainer) -> None:
        """The step's gradients are computed and not yet applied (clip or inspect them here)."""

    def on_step_end(self, trainer, step: int, stats: Dict[str, float]) -> None:
        """The update of step `step` (counted from 1) is applied; stats: loss, grad_norm and the loss's own."""

    def on_validation_end(self, trainer, step: int, scores: Dict[str, float]) -> None:
        """After an evaluation on the validation split: its loss and metrics at `step`."""

    def on_train_end(self, trainer, step: int, metrics: Dict[str, float]) -> None:
        """After the test metrics are computed (metrics: add to it) and before metrics.json is written."""

    def on_exception(self, trainer, step: int, error: BaseException) -> None:
        """The step after `step` raised `error` (e.g. training/trainer.py's Diverged), before the run ends with it."""

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs to continue as the uninterrupted one (tensors, numbers, strings)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """The inverse of state_dict()."""


class GradientClipping(Callback):
    """Scale the gradients so that their global norm is at most max_norm (the usual cure for EBM
    training that diverges); the norm before clipping is the step's grad_norm statistic.

    Args:
        max_norm: the largest global gradient norm; None = no clipping.
    """

    def __init__(self, max_norm: Optional[float] = 10.0):
        require(max_norm is None or (max_norm > 0 and math.isfinite(max_norm)), "max_norm", max_norm, "must be > 0 or null")
        self.max_norm = max_norm

    def on_after_backward(self, trainer) -> None:
        if self.max_norm is not None:
            trainer.grad_norm = torch.nn.utils.clip_grad_norm_(trainer.parameters, self.max_norm)
