"""The generalised margin losses of "A Tutorial on Energy-Based Learning" (LeCun, Chopra, Hadsell,
Ranzato, Huang, 2006), each a function Q(E+, E-) of the data's energy E+ = F(x, y) and the most
offending incorrect answer's E- (found as loss=hinge finds it: see OffendingAnswerLoss, which also
scores uniform incorrect answers by the same Q). loss=hinge is in losses/hinge.py.

| loss                 | Q(E+, E-)                                   | margin                  |
| -------------------- | ------------------------------------------- | ----------------------- |
| `perceptron`         | E+ - min(E+, E-) = relu(E+ - E-)             | none: flat is a minimum |
| `log`                | log(1 + exp(E+ - E-))                       | soft, infinite          |
| `lvq2`               | min(1, relu((E+ - E-) / (delta E-)))        | none                    |
| `mce`                | sigmoid(E+ - E-)                            | soft                    |
| `square_square`      | E+^2 + relu(m - E-)^2                        | m                       |
| `square_exponential` | E+^2 + gamma exp(-E-)                       | soft                    |

LVQ2, square-square and square-exponential assume non-negative energies (energy=mlp's square, which
its output=auto picks under these losses, or softplus): they push E+ towards 0 and E- up from it,
and refuse an energy that declares it can go below 0.
"""

import torch

from ebm_cli.errors import require_positive
from ebm_cli.losses.offending import OffendingAnswerLoss


class Perceptron(OffendingAnswerLoss):
    """The generalised perceptron loss: E+ - min_y F(x, y), the min over the data's own y and the
    incorrect answers searched: Q = relu(E+ - E-). It has no margin: it is zero as soon as the data
    is no higher than any incorrect answer, so a flat energy is a minimum and nothing pushes the
    landscape apart once it is reached.

    Args: exclude, x_window, proposals, uniform, data, y_space, device (see OffendingAnswerLoss).
    """

    name = "perceptron"

    def pair(self, e_pos, e_neg):
        return torch.relu(e_pos - e_neg)


class LogLoss(OffendingAnswerLoss):
    """The log loss: Q = log(1 + exp(E+ - E-)), a soft hinge whose margin is infinite: it keeps
    pushing E- above E+, ever more gently.

    Args: exclude, x_window, proposals, uniform, data, y_space, device (see OffendingAnswerLoss).
    """

    name = "log"

    def pair(self, e_pos, e_neg):
        return torch.nn.functional.softplus(e_pos - e_neg)


class LVQ2(OffendingAnswerLoss):
    """The LVQ2 loss (Kohonen): Q = min(1, relu((E+ - E-) / (delta E-))). Zero once E+ <= E-
    (no margin), linear in the relative gap up to a saturation at 1 where the data's energy is far
    above the offending answer's. It assumes positive energies; E- is floored at `floor` so that
    the ratio stays finite (a non-positive E- saturates the loss at 1, with no gradient).

    Args:
        delta: the width of the linear part, relative to E-.
        floor: the smallest E- the ratio divides by.
        exclude, x_window, proposals, uniform, data, y_space, device: see OffendingAnswerLoss.
    """

    name = "lvq2"
    needs_non_negative_energy = True

    def __init__(self, delta: float = 1.0, floor: float = 1e-3, exclude: float = 0.1, x_window: float = 0.02,
                 proposals: int = 64, uniform: int = 16, *, data, y_space, device="cpu"):
        require_positive(delta=delta, floor=floor)
        super().__init__(exclude, x_window, proposals, uniform, data=data, y_space=y_space, device=device)
        self.delta, self.floor = delta, floor

    def pair(self, e_pos, e_neg):
        return torch.clamp((e_pos - e_neg) / (self.delta * e_neg.clamp(min=self.floor)), 0.0, 1.0)


class MCE(OffendingAnswerLoss):
    """The minimum classification error loss (Juang, Chou, Lee): Q = sigmoid(E+ - E-), a smooth
    count of the samples whose offending answer is lower than the data. Its gradient vanishes on
    both sides, so it refines a landscape more than it builds one.

    Args: exclude, x_window, proposals, uniform, data, y_space, device (see OffendingAnswerLoss).
    """

    name = "mce"

    def pair(self, e_pos, e_neg):
        return torch.sigmoid(e_pos - e_neg)


class SquareSquare(OffendingAnswerLoss):
    """The square-square loss: Q = E+^2 + relu(m - E-)^2: E+ pulled to 0, E- pushed above m. Zero
    once the data's energy is 0 and every incorrect answer's is at least m.

    Args:
        margin: m.
        exclude, x_window, proposals, uniform, data, y_space, device: see OffendingAnswerLoss.
    """

    name = "square_square"
    needs_non_negative_energy = True

    def __init__(self, margin: float = 1.0, exclude: float = 0.1, x_window: float = 0.02, proposals: int = 64,
                 uniform: int = 16, *, data, y_space, device="cpu"):
        require_positive(margin=margin)
        super().__init__(exclude, x_window, proposals, uniform, data=data, y_space=y_space, device=device)
        self.margin = margin

    def pair(self, e_pos, e_neg):
        return e_pos.pow(2) + torch.relu(self.margin - e_neg).pow(2)


class SquareExponential(OffendingAnswerLoss):
    """The square-exponential loss (LeCun and Huang): Q = E+^2 + gamma exp(-E-): E+ pulled to 0,
    E- pushed up by a force that fades exponentially (a soft margin).

    Args:
        gamma: the weight of the exponential term.
        exclude, x_window, proposals, uniform, data, y_space, device: see OffendingAnswerLoss.
    """

    name = "square_exponential"
    needs_non_negative_energy = True

    def __init__(self, gamma: float = 1.0, exclude: float = 0.1, x_window: float = 0.02, proposals: int = 64,
                 uniform: int = 16, *, data, y_space, device="cpu"):
        require_positive(gamma=gamma)
        super().__init__(exclude, x_window, proposals, uniform, data=data, y_space=y_space, device=device)
        self.gamma = gamma

    def pair(self, e_pos, e_neg):
        return e_pos.pow(2) + self.gamma * torch.exp(-e_neg)
