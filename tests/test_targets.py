"""The curves, video and translation experiments meet their targets (full size; a minute or two each on 2 CPU cores)."""

import pytest

from ebm_cli.tasks.train import train
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


@pytest.mark.slow
def test_video_latent_model_predicts_every_future_sharply_and_the_baseline_blurs(tmp_path):
    """The preset on the default generator (K = 3 futures), tau = dataset.eps = 0.01 per-pixel MSE."""
    m = train(make_cfg("experiment=video_latent", "trainer.device=cpu", "logger.landscape_every=0"), tmp_path)
    assert m["coverage@0.01"] >= 0.90 and m["precision@0.01"] >= 0.90, m
    assert m["sharpness_ratio"] >= 0.8 and m["latent_used"] == 3, m
    # the MSE baseline, trained on the same batches: the average of the futures, near none of them
    assert m["baseline_precision@0.01"] <= 0.3 and m["baseline_sharpness_ratio"] <= 0.7, m


@pytest.mark.slow
def test_translation_modes_cover_the_valid_sets_and_one_mode_covers_one_in_n(tmp_path):
    """Held-out sources (unseen, built from seen words), K = 4 modes against the K = 1 baseline."""
    m = train(make_cfg("experiment=translation_latent", "trainer.device=cpu", "logger.landscape_every=0"), tmp_path / "k4")
    assert m["precision@0"] >= 0.95 and m["coverage@0"] >= 0.90, m
    one = train(make_cfg("experiment=translation_latent", "trainer.device=cpu", "logger.landscape_every=0",
                         "energy.z.k=1"), tmp_path / "k1")
    assert abs(one["coverage@0"] - 1 / one["refs_per_source"]) <= 0.05, one  # one translation per source


@pytest.mark.slow
def test_translation_on_a_few_hundred_pairs_translates_unseen_combinations(tmp_path):
    """A small TSV (150 sources, 361 pairs; 15 held out, each a new combination of words seen in
    training), the preset with only the path changed."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "translation_latent" / "make_tsv.py"
    subprocess.run([sys.executable, str(script), str(tmp_path / "small.tsv"), "--sources", "150"], check=True,
                   capture_output=True)
    m = train(make_cfg("experiment=translation_latent", f"dataset.path={tmp_path / 'small.tsv'}", "trainer.device=cpu",
                       "logger.landscape_every=0"), tmp_path / "run")
    assert m["coverage@0"] >= 0.90 and m["precision@0"] >= 0.95, m


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["nll", "cd", "dsm", "hinge", "log", "mce"])
def test_loss_zoo_losses_with_a_contrastive_term_or_a_margin_cover_the_curves(tmp_path, loss):
    """experiment=loss_zoo's energy and budget: the losses with a contrastive term or a margin reach
    coverage >= 0.9, and their landscapes are not flat."""
    import json

    metrics = train(make_cfg("experiment=loss_zoo", "trainer.device=cpu", f"loss={loss}"), tmp_path / loss)
    assert metrics["coverage@0.05"] >= 0.90, (loss, metrics)
    assert not json.loads((tmp_path / loss / "metrics.json").read_text())["collapsed"], loss


@pytest.mark.slow
def test_loss_zoo_energy_loss_collapses_and_its_run_says_so(tmp_path):
    """The energy loss (no contrastive term) goes flat, and its run says so."""
    import json

    flat = train(make_cfg("experiment=loss_zoo", "trainer.device=cpu", "loss=energy", "trainer.steps=300"),
                 tmp_path / "energy")
    assert json.loads((tmp_path / "energy" / "metrics.json").read_text())["collapsed"] and flat["energy_range"] < 0.01
