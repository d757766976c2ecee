"""Inverse-temperature schedules: beta(step) -> float, for training or inference steps."""

import bisect
import math
from typing import Callable, Sequence

BetaSchedule = Callable[[int], float]


def constant(value: float) -> BetaSchedule:
    return lambda step: float(value)


def _progress(step: int, steps: int) -> float:
    return min(max(step / max(steps, 1), 0.0), 1.0)


def linear(start: float, end: float, steps: int) -> BetaSchedule:
    return lambda step: start + (end - start) * _progress(step, steps)


def exponential(start: float, end: float, steps: int) -> BetaSchedule:
    """Geometric: equal ratios per step, the usual annealing of an inverse temperature."""
    return lambda step: start * (end / start) ** _progress(step, steps)


def cosine(start: float, end: float, steps: int) -> BetaSchedule:
    return lambda step: end + (start - end) * 0.5 * (1 + math.cos(math.pi * _progress(step, steps)))


def piecewise(values: Sequence[float], milestones: Sequence[int]) -> BetaSchedule:
    """values[i] holds from milestones[i-1] (inclusive) to milestones[i]."""
    values, milestones = list(values), list(milestones)
    return lambda step: float(values[bisect.bisect_right(milestones, step)])


def build_schedule(cfg) -> BetaSchedule:
    if cfg.name == "constant":
        return constant(cfg.value)
    if cfg.name == "step":
        return piecewise(cfg.betas, cfg.milestones)
    return {"linear": linear, "exponential": exponential, "cosine": cosine}[cfg.name](cfg.start, cfg.end, cfg.steps)
