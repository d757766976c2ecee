"""The loss contract: loss(energy, x, y, beta) -> (scalar loss, {name: scalar tensor} to log)."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import torch

from ebm_cli.errors import UserError

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

    # True for a loss that assumes F >= 0 (square-square, square-exponential, LVQ2: they push E+
    # towards 0): an energy that declares `non_negative = False` (energy=mlp's square_plus_linear or
    # linear output) is refused in one line.
    needs_non_negative_energy = False
    # True for a loss that normalises exp(-beta F) over the whole y box at every step (loss=nll):
    # every branch of the data then needs a valley of its own at once. energy=mlp's output=auto
    # reads it (the runner passes it to an energy that asks for `loss_normalises_over_y`).
    normalises_over_y = False

    def check(self, energy) -> None:
        """Raise UserError if this loss cannot train `energy`."""
        if self.needs_non_negative_energy and getattr(energy, "non_negative", None) is False:
            output = getattr(energy, "output", None)
            how = f" (energy.output={output})" if output else ""
            raise UserError(f"loss={self.name} assumes F(x, y) >= 0, but {type(energy).__name__}{how} can go below 0: "
                            f"add energy.output=square (or softplus)")

    @abstractmethod
    def __call__(self, energy, x: torch.Tensor, y: torch.Tensor, beta: float) -> Tuple[torch.Tensor, Stats]:
        """x: (B, *x_shape), y: (B, *y_shape), beta: the schedule's inverse temperature."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass
