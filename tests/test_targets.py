"""The curves experiments meet their targets (full size; a minute or two on 2 CPU cores)."""

import pytest

from ebm_cli.train import train
from helpers import make_cfg, write_csv

# the branches of experiments/curves/make_csv.py's default four-branch file
FOUR_BRANCHES = [lambda x: 1.0 + 0.2 * x, lambda x: 0.3 * x, lambda x: -0.6 + 0 * x, lambda x: -1.2 + 0.3 * x * x]


@pytest.mark.slow
def test_default_ebm_covers_all_branches_and_regressor_does_not(tmp_path):
    ebm = train(make_cfg("trainer.device=cpu"), tmp_path / "ebm")
    assert ebm["coverage@0.05"] >= 0.90 and ebm["precision@0.05"] >= 0.90, ebm
    regressor = train(make_cfg("trainer.device=cpu", "energy=regressor"), tmp_path / "regressor")
    assert regressor["coverage@0.05"] <= 0.45, regressor
    assert regressor["candidates_per_x"] == 1.0  # one output per x, whatever the data


@pytest.mark.slow
def test_latent_model_covers_three_branches_and_four_with_only_path_and_capacity_changed(tmp_path):
    three = train(make_cfg("experiment=curves_latent", "trainer.device=cpu"), tmp_path / "three")
    assert three["coverage@0.05"] >= 0.95 and three["precision@0.05"] >= 0.95, three
    assert three["latent_used"] == 3
    csv = write_csv(tmp_path / "four.csv", FOUR_BRANCHES, [-1 + 2 * i / 1000 for i in range(1001)], noise=0.02)
    four = train(make_cfg("experiment=curves_latent", "trainer.device=cpu", f"dataset.path={csv}", "energy.z.k=4"),
                 tmp_path / "four")
    assert four["coverage@0.05"] >= 0.85, four


@pytest.mark.slow
def test_contrastive_divergence_with_langevin_negatives_covers_the_branches(tmp_path):
    metrics = train(make_cfg("loss=cd", "trainer.device=cpu"), tmp_path)
    assert metrics["coverage@0.05"] >= 0.85, metrics
