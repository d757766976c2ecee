"""The moving average of the weights and the validation that decides a run's budget, as units
(the runs that use them: test_validation.py)."""

import pytest
import torch

from ebm_cli.training.early_stopping import ValidationStopper
from ebm_cli.training.ema import WeightAverage


def test_the_average_starts_short_and_reaches_its_decay():
    """d(t) = min(decay, (1 + t) / (10 + t)): the first update copies the weights, an early one
    follows them closely, a late one by 1 - decay."""
    model = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, 0.99)
    values, expected = [], None
    for t in range(2000):
        with torch.no_grad():
            model.weight.fill_(float(t))
        average.update()
        w = float(average.evaluated.weight.detach())
        if t == 0:
            expected = 0.0
        else:
            d = min(0.99, (1 + t) / (10 + t))  # the update after t earlier ones
            expected = d * expected + (1 - d) * t
        values.append((w, expected))
    assert all(w == pytest.approx(e, rel=1e-5, abs=1e-5) for w, e in values)
    assert values[5][0] > 2.0  # a short average at the start: not dragged back to the first weights
    assert 2000 - 1 - values[-1][0] == pytest.approx(99, rel=0.05)  # a linear climb lags by ~1 / (1 - decay)


def test_no_average_is_the_model_itself():
    model = torch.nn.Linear(1, 1)
    average = WeightAverage(model, 0.0)
    average.update()
    assert average.evaluated is model and average.state_dict() == {}


def keep_stop(decision):
    return decision.keep, decision.stop


def test_an_improvement_resets_the_patience_a_tie_is_kept_without_resetting_it():
    stopper = ValidationStopper(maximize=True, patience=2)
    assert keep_stop(stopper.observe(100, 0.5, loss=1.0)) == (True, False)
    assert keep_stop(stopper.observe(200, 0.7, loss=1.0)) == (True, False)
    assert keep_stop(stopper.observe(300, 0.7, loss=1.0)) == (True, False)  # as good, no higher loss: kept, no progress
    assert stopper.best["step"] == 300 and stopper.best["value"] == 0.7 and stopper.evaluations_since == 1
    assert keep_stop(stopper.observe(400, 0.7, loss=1.5)) == (False, True)  # as good, higher loss: not kept; patience out
    assert stopper.best["step"] == 300


def test_a_falling_validation_loss_is_progress_while_the_objective_creeps():
    """A slow learner: its objective stalls for a while, its loss keeps falling: it goes on. A loss
    that has flattened (falls by less than 1% of its fall so far) is not progress."""
    stopper = ValidationStopper(maximize=True, patience=2)
    for step, (value, loss) in enumerate([(0.5, 1.0), (0.6, 0.8), (0.6, 0.6), (0.6, 0.4), (0.6, 0.2)], start=1):
        assert keep_stop(stopper.observe(100 * step, value, loss)) == (True, False)  # better, or as good at a lower loss
    assert stopper.evaluations_since == 0
    assert keep_stop(stopper.observe(600, 0.6, loss=0.195)) == (True, False)  # 0.005 < 1% of the 0.8 fallen: no progress
    assert keep_stop(stopper.observe(700, 0.6, loss=0.199)) == (False, True)


def test_minimise_and_non_finite_objectives():
    stopper = ValidationStopper(maximize=False, patience=3)
    assert keep_stop(stopper.observe(10, 2.0, loss=0.0)) == (True, False)
    assert keep_stop(stopper.observe(20, float("nan"), loss=0.0)) == (False, False)
    assert keep_stop(stopper.observe(30, 1.0, loss=0.0)) == (True, False)
    assert stopper.evaluations_since == 0


def test_nothing_is_kept_or_stopped_before_the_schedule_settles():
    stopper = ValidationStopper(maximize=True, patience=1, not_before=250)
    assert keep_stop(stopper.observe(100, 0.9, loss=0.0)) == (False, False)
    assert keep_stop(stopper.observe(200, 0.1, loss=0.0)) == (False, False)
    assert stopper.best["step"] is None
    assert keep_stop(stopper.observe(300, 0.2, loss=0.0)) == (True, False)
    assert keep_stop(stopper.observe(400, 0.1, loss=0.0)) == (False, True)


def test_its_state_goes_through_a_checkpoint():
    a = ValidationStopper(maximize=True, patience=3)
    a.observe(100, 0.5, loss=1.0)
    a.observe(200, 0.4, loss=1.0)
    b = ValidationStopper(maximize=True, patience=3)
    b.load_state_dict(a.state_dict())
    assert b.best == a.best and b.evaluations_since == 1


def test_a_gain_of_the_objective_smaller_than_one_percent_of_its_rise_is_not_progress():
    """Coverage from 0.30 to 0.95: a later 0.953 is kept (it is better) but is noise, not progress."""
    stopper = ValidationStopper(maximize=True, patience=2)
    stopper.observe(100, 0.30, loss=1.0)
    stopper.observe(200, 0.95, loss=1.0)
    assert keep_stop(stopper.observe(300, 0.953, loss=1.0)) == (True, False) and stopper.evaluations_since == 1
    assert keep_stop(stopper.observe(400, 0.961, loss=1.0)) == (True, False) and stopper.evaluations_since == 0  # +0.008


def test_a_plateau_lowers_the_learning_rate_before_it_stops():
    """lr_drops=1: the first plateau lowers the learning rate and gives the run another `patience`
    evaluations; the second stops it. The count goes through a checkpoint (a resume is exact)."""
    stopper = ValidationStopper(maximize=True, patience=2, lr_drops=1)
    stopper.observe(100, 0.5, loss=1.0)
    assert stopper.observe(200, 0.5, loss=1.0) == (True, False, False)
    assert stopper.observe(300, 0.5, loss=1.0) == (True, True, False) and stopper.drops_done == 1
    resumed = ValidationStopper(maximize=True, patience=2, lr_drops=1)
    resumed.load_state_dict(stopper.state_dict())
    assert resumed.drops_done == 1 and resumed.evaluations_since == 0
    assert resumed.observe(400, 0.8, loss=1.0) == (True, False, False)  # the smaller steps got somewhere
    assert resumed.observe(500, 0.8, loss=1.0) == (True, False, False)
    assert resumed.observe(600, 0.8, loss=1.0) == (True, False, True)


def test_the_loss_fall_is_measured_against_the_whole_run_annealing_included():
    """The scale of a meaningful fall is the loss's fall from the first evaluation, not from where
    the beta schedule settled: small wobbles after a large annealing fall are not progress."""
    stopper = ValidationStopper(maximize=True, patience=2, not_before=300)
    stopper.observe(100, 0.2, loss=1.5)  # annealing: not counted, but the loss's scale
    stopper.observe(200, 0.6, loss=0.6)
    stopper.observe(300, 0.9, loss=0.17)
    stopper.observe(400, 0.9, loss=0.16)  # 0.01 < 1% of the 1.34 fallen
    assert stopper.evaluations_since == 1
    assert keep_stop(stopper.observe(500, 0.9, loss=0.155)) == (True, True)
