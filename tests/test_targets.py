"""The default experiment meets its targets (full size; about a minute on 2 CPU cores)."""

import pytest

from ebm_cli.train import train
from helpers import make_cfg


@pytest.mark.slow
def test_default_ebm_covers_all_branches_and_regressor_does_not(tmp_path):
    ebm = train(make_cfg("trainer.device=cpu"), tmp_path / "ebm")
    assert ebm["coverage@0.05"] >= 0.90 and ebm["precision@0.05"] >= 0.90, ebm
    regressor = train(make_cfg("trainer.device=cpu", "energy=regressor"), tmp_path / "regressor")
    assert regressor["coverage@0.05"] <= 0.45, regressor
    assert regressor["candidates_per_x"] == 1.0  # one output per x, whatever the data
