"""An exponential moving average of the energy's weights (torch.optim.swa_utils.AveragedModel).

At a constant learning rate the weights keep jumping around the minimum they have found; their
moving average sits near its centre. It is what the run evaluates, checkpoints for task=infer and
reports: smoother validation curves (so that early stopping sees the trend, not the noise of the
last steps) and no learning-rate decay tied to a fixed number of steps.
"""

from typing import Any, Dict, Optional

import torch
from torch.optim.swa_utils import AveragedModel

from ebm_cli.core.energy import LatentEnergy
from ebm_cli.errors import require
from ebm_cli.training.callbacks import Callback


class WeightAverage(Callback):
    """ema(t) = d(t) * ema(t - 1) + (1 - d(t)) * w(t), from the first step's weights, with
    d(t) = min(decay, (1 + t) / (10 + t)): a short average while the weights move fast at the start
    (a 30-step run is not averaged with its random initial weights), `decay` once t is large
    (as TensorFlow's ExponentialMovingAverage with num_updates). decay = 0: no average, the evaluated
    model is the trained one.

    Args:
        model: the trained module.
        decay: in [0, 1): the average's horizon is about 1 / (1 - decay) steps.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.99):
        require(0 <= decay < 1, "decay", decay, "must be in [0, 1) (0 = no moving average)")
        self.model, self.decay = model, decay
        self.updates = 0  # counted here: reading AveragedModel's counter would sync a GPU every step
        self.average: Optional[AveragedModel] = None
        if decay > 0:  # its update counter on the model's device, whatever the default device is
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            with torch.device(device):
                self.average = AveragedModel(model, use_buffers=True)
            # the tensors to average, in pairs (a module's tensors stay the same objects when loaded)
            pairs = [(a, m) for a, m in zip([*self.average.module.parameters(), *self.average.module.buffers()],
                                            [*model.parameters(), *model.buffers()]) if a.is_floating_point()]
            self._averaged, self._current = [a.detach() for a, _ in pairs], [m.detach() for _, m in pairs]

    @property
    def evaluated(self) -> torch.nn.Module:
        """The module that validation, the test metrics and task=infer use."""
        return self.average.module if self.average is not None else self.model

    def update(self) -> None:
        """One step of the average (a single fused kernel over every tensor)."""
        if self.average is None:
            return
        if self.updates == 0:  # the first weights as they are
            torch._foreach_copy_(self._averaged, self._current)
        else:
            torch._foreach_lerp_(self._averaged, self._current, 1 - min(self.decay, (1 + self.updates) / (10 + self.updates)))
        self.updates += 1

    def on_step_end(self, trainer, step: int, stats) -> None:
        self.update()

    def set_beta(self, beta: float) -> None:
        """A latent energy's beta, on the average too (it is an attribute, not a weight)."""
        for module in (self.model, self.evaluated):
            if isinstance(module, LatentEnergy):
                module.set_beta(beta)

    def state_dict(self) -> Dict[str, Any]:
        """How many updates the average has seen (its weights are `evaluated.state_dict()`)."""
        return {"updates": self.updates} if self.average is not None else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if self.average is not None and state:
            self.updates = int(state["updates"])
            self.average.n_averaged.fill_(self.updates)


def weight_average_of(trainer) -> Optional[WeightAverage]:
    """The moving average among the trainer's callbacks (the config's callbacks.ema), or None."""
    return next((cb for cb in trainer.callbacks.values() if isinstance(cb, WeightAverage)), None)
