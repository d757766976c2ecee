"""The loss contract: loss(energy, x, y, beta) -> (scalar loss, {name: scalar tensor} to log)."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import torch

Stats = Dict[str, torch.Tensor]


class Loss(ABC):
    """A training objective. Constructors take their settings as keyword arguments; the runner adds,
    by name, what a loss asks for: `y_space` (the data's y space), `inference` (the run's inference
    method), `data` (the dataset object) and `device`. `check(energy)` runs before training and says
    in one line why a loss cannot train an energy. A loss with state (a replay buffer) returns it
    from `state_dict` so that checkpoints keep it."""

    name = "loss"  # how messages name it: the built-ins' config option, else the class name
    # True for a loss that differentiates through grad_y F (score matching): torch.compile has no
    # double backward, so trainer.compile leaves the energy eager for it.
    needs_double_backward = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def check(self, energy) -> None:
        """Raise UserError if this loss cannot train `energy`."""

    @abstractmethod
    def __call__(self, energy, x: torch.Tensor, y: torch.Tensor, beta: float) -> Tuple[torch.Tensor, Stats]:
        """x: (B, *x_shape), y: (B, *y_shape), beta: the schedule's inverse temperature."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass
