"""Inverse-temperature schedules: beta(step) -> float, for training steps or sampler steps.

Each is a small callable object built from its config (`beta=constant|linear|exponential|cosine|
step|cold|anneal|soft_anneal`, or a user's own class with `__call__(step) -> float`). `settled_at`,
where a schedule has it, is the step from which beta stays put: a run is not stopped early by its
validation before then (while beta moves, the objective of one evaluation and the next are not
comparable).
"""

import bisect
import math
from typing import Sequence

from ebm_cli.errors import require, require_choice, require_positive

SHAPES = ("linear", "exponential", "cosine")


def cosine(start: float, end: float, step: int, steps: int) -> float:
    """From `start` at step 0 to `end` at step `steps` along half a cosine: the one cosine ramp of
    the runner (beta=cosine, trainer.lr_schedule=cosine, gradient inference's step size)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * step / max(steps, 1)))


class Constant:
    """beta(step) = value.

    Args:
        value: the inverse temperature (> 0).
    """

    def __init__(self, value: float = 1.0):
        require_positive(value=value)
        self.value = float(value)

    def __call__(self, step: int) -> float:
        return self.value

    settled_at = 0  # the step from which beta no longer changes (early stopping waits for it)


class Annealed:
    """beta goes from `start` to `end` over `steps` steps, then stays at `end`.

    Args:
        start: beta at step 0.
        end: beta from step `steps` on.
        steps: the length of the ramp (usually ${trainer.steps}).
        shape: linear | exponential (geometric: equal ratios per step, the usual annealing of an
            inverse temperature) | cosine.
    """

    def __init__(self, start: float = 0.1, end: float = 1.0, steps: int = 1000, shape: str = "linear"):
        require_positive(start=start, end=end, steps=steps)
        require_choice("shape", shape, SHAPES)
        self.start, self.end, self.steps, self.shape = float(start), float(end), int(steps), shape
        self.settled_at = self.steps  # no early stop while beta still moves

    def __call__(self, step: int) -> float:
        t = min(max(step / max(self.steps, 1), 0.0), 1.0)
        if self.shape == "linear":
            return self.start + (self.end - self.start) * t
        if self.shape == "exponential":
            return self.start * (self.end / self.start) ** t
        return cosine(self.start, self.end, min(max(step, 0), self.steps), self.steps)


class Piecewise:
    """betas[i] holds from milestones[i-1] (inclusive) to milestones[i].

    Args:
        betas: the values (each > 0).
        milestones: the increasing steps at which the next value starts (len(betas) - 1 of them).
    """

    def __init__(self, betas: Sequence[float] = (0.3, 1.0, 3.0), milestones: Sequence[int] = (500, 1000)):
        self.betas, self.milestones = [float(b) for b in betas], [int(m) for m in milestones]
        require(len(self.betas) >= 1 and all(b > 0 and math.isfinite(b) for b in self.betas), "betas", self.betas,
                "needs at least one value, every one finite and > 0")
        require(len(self.milestones) == len(self.betas) - 1, "milestones", self.milestones,
                "needs len(beta.betas) - 1 entries")
        require(self.milestones == sorted(self.milestones), "milestones", self.milestones, "must be increasing")
        self.settled_at = self.milestones[-1] if self.milestones else 0

    def __call__(self, step: int) -> float:
        return self.betas[bisect.bisect_right(self.milestones, step)]


def ramp(shape: str, start: float, end: float, steps: int):
    """A sampler's schedule by name: `constant` (end throughout) or an Annealed shape."""
    return Constant(end) if shape == "constant" else Annealed(start, end, steps, shape)
