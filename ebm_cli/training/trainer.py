"""The one training step: what a training run, the pre-run check and the benchmark's time-to-quality
case all run (TorchEBM's BaseTrainer.train_step; a subclass may override `step`)."""

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ebm_cli.errors import UserError
from ebm_cli.runtime.accelerate import autocast
from ebm_cli.training.callbacks import Callback
from ebm_cli.training.distributed import Single


class Diverged(Exception):
    """A value of the step (loss, grad_norm, a statistic) was non-finite or beyond max_abs; the update
    was not applied. values: every value of the step; bad: the names of those at fault."""

    def __init__(self, values: Dict[str, float], bad: List[str]):
        super().__init__(", ".join(f"{k}={values[k]:.3g}" for k in bad))
        self.values, self.bad = values, bad


class CallbackFailed(Exception):
    """A callback's hook raised `error`; `where`: "callbacks.<name> (<Class>.<hook>)"."""

    def __init__(self, where: str, error: BaseException):
        super().__init__(f"{where} fails ({type(error).__name__})")  # one_line adds the error's own first line
        self.where, self.error = where, error


class Trainer:
    """Energy + loss + optimizer (+ scheduler, callbacks): `step(x, y, beta) -> stats` is one update.

    Args:
        energy: the trained module.
        loss: a Loss: loss(energy, x, y, beta) -> (scalar tensor, {name: one-number tensor}).
        optimizer: over energy's parameters (optimizer=...).
        scheduler: a torch learning-rate scheduler over that optimizer (scheduler=...), stepped after
            each update; a ReduceLROnPlateau is stepped by `validated(objective)` instead. None: none.
        callbacks: name -> Callback (callbacks=...), called in this order.
        max_abs: a loss, statistic or gradient norm beyond this (or non-finite) raises Diverged
            before the update is applied.
        precision: fp32 | tf32 | bf16 (bf16: the forward pass under autocast).
        baseline: a Baseline trained on the same batches at the same learning rate, or None.
        sync: this process's place in a data-parallel run (training/distributed.py: Group), or
            Single(): the gradients and the step's values are averaged over the ranks, and what the
            loss draws at random comes from the rank's own stream.
    """

    def __init__(self, energy: torch.nn.Module, loss, optimizer: torch.optim.Optimizer, scheduler=None,
                 callbacks: Optional[Dict[str, Callback]] = None, max_abs: float = math.inf, precision: str = "fp32",
                 device: Optional[torch.device] = None, baseline=None, sync=None):
        self.energy, self.loss, self.optimizer, self.scheduler = energy, loss, optimizer, scheduler
        self.callbacks = dict(callbacks or {})
        self.max_abs, self.precision, self.baseline = max_abs, precision, baseline
        self.sync = sync or Single()
        self.device = device or next((p.device for p in energy.parameters()), torch.device("cpu"))
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.step_count = 0  # updates applied (the run's step once resumed)
        self.grad_norm: Optional[torch.Tensor] = None  # set by a clipping callback in on_after_backward
        self.should_stop: Optional[str] = None  # a callback's reason to end the run at this step
        self.tb = None  # the run's TensorBoard logger, for callbacks (set by the training run)
        self.run_dir = None
        self.last_beta: Optional[float] = None  # the beta and learning rate of the last step's update
        self.last_lr: Optional[float] = None

    @property
    def lr(self) -> float:
        """The learning rate of the next update (the first parameter group's)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, x: torch.Tensor, y: torch.Tensor, beta: float) -> Dict[str, float]:
        """One update on a batch; the step's values: loss, grad_norm (before clipping) and the loss's
        statistics (+ baseline_mse). Raises Diverged, with the weights untouched, on a bad value."""
        self.last_beta, self.last_lr = beta, self.lr  # the scheduler moves the lr after the update
        loss, stats = self.forward(x, y, beta)
        if self.baseline is not None:  # the same batch, its own optimiser, this step's learning rate
            stats["baseline_mse"] = self.baseline.step(x, y, self.lr, self.sync)
        local = self.backward(loss, stats)
        grad_norm = self.grad_norm if self.grad_norm is not None else torch.nn.utils.clip_grad_norm_(self.parameters, math.inf)
        # One read-back per step, before the update is applied: a diverging step never reaches the weights.
        stacked = torch.cat([local[:1], grad_norm.reshape(1).float(), local[1:]])
        values = dict(zip(["loss", "grad_norm", *stats], stacked.tolist()))
        bad = [k for k, v in values.items() if not math.isfinite(v) or abs(v) > self.max_abs]
        if bad:
            raise Diverged(values, bad)
        self.optimizer.step()
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        self.step_count += 1
        for callback in self.callbacks.values():
            callback.on_step_end(self, self.step_count, values)
        return values

    def forward(self, x: torch.Tensor, y: torch.Tensor, beta: float) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The loss on a batch x: (B, *x_shape), y: (B, *y_shape) at beta: (scalar tensor with a
        gradient, {name: one-number tensor}); UserError where the loss breaks that contract."""
        with autocast(self.precision, self.device), self.sync.sampling(self.step_count):
            loss, stats = self.loss(self.energy, x, y, beta)
        if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad):
            raise UserError(f"loss {type(self.loss).__name__}: must return a scalar tensor with a gradient, and a dict "
                            f"of scalars; it returned {type(loss).__name__}"
                            f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
        if not all(isinstance(v, torch.Tensor) and v.numel() == 1 for v in stats.values()):
            raise UserError(f"loss {type(self.loss).__name__}: its dict of statistics must hold one-number tensors")
        return loss, stats

    def backward(self, loss: torch.Tensor, stats: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The step's gradients, averaged over the ranks, then each callback's on_after_backward (a
        failure there is CallbackFailed, naming the callback); the loss and statistics (1 + n,), averaged."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Averaged over the ranks before clipping, with the loss and statistics: every rank clips the
        # same gradient and sees the same values, and so the same divergence.
        local = self.sync.average_gradients(self.parameters, torch.stack([loss.detach(), *stats.values()]).float())
        self.grad_norm = None
        for name, callback in self.callbacks.items():
            try:
                callback.on_after_backward(self)
            except UserError:
                raise
            except Exception as exc:
                raise CallbackFailed(f"callbacks.{name} ({type(callback).__name__}.on_after_backward)", exc) from exc
        return local

    def validated(self, objective: Optional[float], maximize: bool) -> None:
        """An evaluation's objective: what a plateau scheduler (ReduceLROnPlateau, mode=min) steps on."""
        if isinstance(self.scheduler, ReduceLROnPlateau) and objective is not None:
            self.scheduler.step(-objective if maximize else objective)

    def lower_lr(self, factor: float) -> None:
        """Multiply the learning rate by factor from now on (a plateau, trainer.lr_drops): the current
        one and the scheduler's base, so that the schedule continues from the lowered rate."""
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
        if hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]

    def state_dict(self) -> Dict[str, object]:
        """Optimizer, scheduler and callbacks: with the weights and RNG states, a resumable run."""
        state = {"optimizer": self.optimizer.state_dict(), "step": self.step_count,
                 "callbacks": {name: cb.state_dict() for name, cb in self.callbacks.items()}}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """The scheduler's and callbacks' states (the optimizer's is restored with the weights)."""
        self.step_count = int(state.get("step", 0))
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        for name, saved in (state.get("callbacks") or {}).items():
            if name in self.callbacks and saved:
                self.callbacks[name].load_state_dict(saved)
