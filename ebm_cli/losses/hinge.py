"""loss=hinge: a margin between the data's energy and the most offending incorrect answer's."""

import torch

from ebm_cli.errors import require_positive
from ebm_cli.losses.offending import OffendingAnswerLoss


class Hinge(OffendingAnswerLoss):
    """The hinge loss: Q(E+, E-) = relu(m + E+ - E-), summed over the most offending incorrect
    answer and averaged over uniform incorrect ones (see OffendingAnswerLoss). Zero once every
    incorrect answer's energy is at least m above the data's.

    Args:
        margin: m.
        exclude, x_window, proposals, uniform, data, y_space, device: see OffendingAnswerLoss.
    """

    name = "hinge"

    def __init__(self, margin: float = 1.0, exclude: float = 0.1, x_window: float = 0.02, proposals: int = 64,
                 uniform: int = 16, *, data, y_space, device="cpu"):
        require_positive(margin=margin)
        super().__init__(exclude, x_window, proposals, uniform, data=data, y_space=y_space, device=device)
        self.margin = margin

    def pair(self, e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.margin + e_pos - e_neg)
