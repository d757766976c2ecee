"""Learning-rate schedules (scheduler=constant|cosine|warmup_cosine; onecycle and plateau are torch's
own): torch.optim.lr_scheduler classes, so any of torch's, or a user's, fits in their place, and
their state goes into the checkpoint. Each is stepped once per training step (ReduceLROnPlateau at
each validation, with the objective).

The learning rate of a step is `base_lr * factor(step)`: a drop on a plateau (trainer.lr_drops)
multiplies base_lr, and the schedule goes on from there.
"""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ebm_cli.errors import require, require_positive


class Constant(LambdaLR):
    """lr(step) = the optimizer's lr."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        super().__init__(optimizer, lambda step: 1.0, last_epoch)


class WarmupCosine(LambdaLR):
    """A linear warm-up from lr / warmup_steps to lr over `warmup_steps`, then half a cosine from lr
    down to min_lr at `total_steps`, then min_lr. An lr below min_lr (a user lowering lr alone) is
    kept, never climbed from.

    Args:
        total_steps: where the cosine ends (trainer.steps, the run's ceiling).
        warmup_steps: 0 = no warm-up (scheduler=cosine).
        min_lr: the learning rate at total_steps.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0,
                 last_epoch: int = -1):
        require_positive(total_steps=total_steps)
        require(warmup_steps >= 0 and warmup_steps < total_steps, "warmup_steps", warmup_steps,
                "must be in [0, total_steps)")
        require(min_lr >= 0, "min_lr", min_lr, "must be >= 0")
        self.total_steps, self.warmup_steps, self.min_lr = total_steps, warmup_steps, min_lr
        lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
        super().__init__(optimizer, [self._factor_for(lr) for lr in lrs], last_epoch)

    def _factor_for(self, lr: float):
        floor = min(self.min_lr / lr, 1.0) if lr > 0 else 1.0  # as a share of lr; never above it

        def factor(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            span = self.total_steps - self.warmup_steps
            done = min(step - self.warmup_steps, span) / span
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done))

        return factor


class Cosine(WarmupCosine):
    """Half a cosine from lr to min_lr at total_steps (WarmupCosine without the warm-up)."""

    def __init__(self, optimizer: Optimizer, total_steps: int, min_lr: float = 0.0, last_epoch: int = -1):
        super().__init__(optimizer, total_steps, 0, min_lr, last_epoch)
