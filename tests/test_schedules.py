import math

import pytest

from ebm_cli.build import build_schedule
from ebm_cli.schedules import Annealed, Constant, Piecewise
from helpers import make_cfg


def test_schedule_values():
    assert Constant(2.0)(123) == 2.0
    assert Annealed(0.1, 1.1, 10, "linear")(5) == pytest.approx(0.6)
    assert Annealed(0.1, 10.0, 10, "exponential")(5) == pytest.approx(1.0)
    cosine = Annealed(1.0, 3.0, 10, "cosine")
    assert cosine(0) == pytest.approx(1.0) and cosine(10) == pytest.approx(3.0)
    assert Annealed(0.1, 1.0, 10, "linear")(50) == pytest.approx(1.0)  # holds the end value after `steps`
    step = Piecewise([0.3, 1.0, 3.0], [10, 20])
    assert [step(s) for s in (0, 9, 10, 19, 20, 99)] == [0.3, 0.3, 1.0, 1.0, 3.0, 3.0]


@pytest.mark.parametrize("name", ["constant", "linear", "exponential", "cosine", "step"])
def test_configured_schedules_are_positive_and_finite(name):
    cfg = make_cfg(f"beta={name}", "trainer.steps=100")
    beta = build_schedule(cfg.beta)
    values = [beta(s) for s in range(0, 200, 7)]
    assert all(v > 0 and math.isfinite(v) for v in values)
