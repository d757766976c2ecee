"""The budget of a run, decided on a validation split: when to keep the weights, when to lower the
learning rate, when to stop.

Every `trainer.eval_every` steps the run scores the (averaged) weights on its validation split.
A better objective keeps those weights; an equal one with a validation loss no higher keeps the
later weights too. The run is still making progress while the objective improves, or the
validation loss falls, by more than PROGRESS of its whole change so far (scale-free: a coverage
that rose from 0.3 to 0.95 has to gain 0.0065 more; a step of the noise of a saturated metric is
not progress, while a slow learner whose loss keeps falling is still learning). After
`trainer.patience` evaluations without progress the run lowers its learning rate by
`trainer.lr_drop` (a plateau at one step size is often a descent at a smaller one: the decay a
schedule of fixed length would have done, here when the data says so), up to `trainer.lr_drops`
times, and then stops; `trainer.steps` is only a ceiling. While the beta schedule is still moving
(an annealing), the objective is not yet comparable: nothing is kept and no stop happens before it
settles.
"""

import math
from typing import Any, Dict, NamedTuple, Optional

PROGRESS = 0.01  # a change counts as progress above this share of the objective's (or the loss's) change so far


class Decision(NamedTuple):
    keep: bool  # these weights are the best so far: save them
    lower_lr: bool  # no progress for `patience` evaluations: go on at a smaller learning rate
    stop: bool  # no progress for `patience` evaluations at the smallest learning rate


class ValidationStopper:
    """Args:
        maximize: the objective's direction.
        patience: evaluations without progress before lowering the learning rate or stopping (0 = never stop).
        not_before: no stop, and nothing kept, before this step (where the beta schedule settles).
        lr_drops: how many times the learning rate is lowered on a plateau before the run stops.
    """

    def __init__(self, maximize: bool, patience: int, not_before: int = 0, lr_drops: int = 0):
        self.maximize, self.patience, self.not_before, self.lr_drops = maximize, patience, not_before, lr_drops
        self.best: Dict[str, Any] = {"step": None, "value": None, "loss": None}  # the kept weights' evaluation
        # the validation loss's first value (any evaluation: the scale of its change) and its lowest
        # since the schedule settled
        self.losses: Dict[str, Optional[float]] = {"first": None, "lowest": None}
        self.first_value: Optional[float] = None  # the objective at the first evaluation that counts
        self.evaluations_since = 0  # evaluations without progress
        self.drops_done = 0  # times the learning rate was lowered
        self.stopped_at: Optional[int] = None  # the step the run stopped at (a resumed run does not go on)

    def _better(self, value: float, than: Optional[float]) -> bool:
        return than is None or (value > than if self.maximize else value < than)

    def _loss_falls(self, loss: float) -> bool:
        """Record the validation loss; True when it fell by more than PROGRESS of its fall so far."""
        if not math.isfinite(loss):
            return False
        first, lowest = self.losses["first"], self.losses["lowest"]
        if lowest is None:
            self.losses.update(first=first if first is not None else loss, lowest=loss)
            return True
        # a floor of a millionth of the loss's size: float noise of unchanged weights is not a fall
        margin = max(PROGRESS * (first - lowest), 1e-6 * max(abs(lowest), 1.0))
        falls = loss < lowest - margin
        self.losses["lowest"] = min(lowest, loss)
        return falls

    def _objective_rises(self, value: float, best: Optional[float]) -> bool:
        """value beats the best so far by more than PROGRESS of the objective's gain so far."""
        if best is None:
            return True
        gain = abs(best - self.first_value) if self.first_value is not None else 0.0
        margin = PROGRESS * gain
        return value > best + margin if self.maximize else value < best - margin

    def observe(self, step: int, value: Optional[float], loss: float) -> Decision:
        """One evaluation at `step`: keep these weights? lower the learning rate? stop here?"""
        if step < self.not_before:
            if self.losses["first"] is None and math.isfinite(loss):
                self.losses["first"] = loss  # the scale of the loss's whole fall, annealing included
            return Decision(False, False, False)
        finite = value is not None and math.isfinite(value)
        if finite and self.first_value is None:
            self.first_value = value
        best_before = self.best["value"]
        improved = finite and self._better(value, best_before)
        keep = improved or (finite and value == best_before and math.isfinite(loss)
                            and (self.best["loss"] is None or loss <= self.best["loss"]))
        if keep:
            self.best.update(step=step, value=value, loss=loss)
        progress = self._loss_falls(loss) | (improved and self._objective_rises(value, best_before))
        self.evaluations_since = 0 if progress else self.evaluations_since + 1
        plateau = bool(self.patience) and self.evaluations_since >= self.patience
        if plateau and self.drops_done < self.lr_drops:
            self.drops_done += 1
            self.evaluations_since = 0
            return Decision(keep, True, False)
        if plateau:
            self.stopped_at = step
        return Decision(keep, False, plateau)

    def state_dict(self) -> Dict[str, Any]:
        return {**self.best, "evaluations_since": self.evaluations_since, "losses": dict(self.losses),
                "first_value": self.first_value, "drops_done": self.drops_done, "stopped_at": self.stopped_at}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.evaluations_since = int(state.get("evaluations_since", 0))
        self.best.update({k: state.get(k) for k in self.best})
        self.losses.update(state.get("losses") or {})
        self.first_value = state.get("first_value")
        self.drops_done = int(state.get("drops_done", 0))
        self.stopped_at = state.get("stopped_at")
