"""Grid and gradient inference find every minimum of analytic energies."""

import pytest
import torch

from ebm_cli.core.energy import Energy
from ebm_cli.core.inference import select_distinct
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.inference.gradient import GradientInference
from ebm_cli.inference.grid import GridInference


class DoubleWell(Energy):
    """F(x, y) = (y^2 - a(x)^2)^2 + 0.01 y, a(x) = 0.7 + 0.2 x: minima near y = +-a(x), y in [-1.5, 1.5]."""

    def forward(self, x, y):
        a = 0.7 + 0.2 * x[:, 0]
        return (y[:, 0] ** 2 - a**2) ** 2 + 0.01 * y[:, 0]  # tilt: the negative well is lower


WELL_BOX = BoxSpace(-1.5, 1.5, (1,))
METHODS = {
    "grid": GridInference(k=2, points=601, dedup=0.05, y_space=WELL_BOX),
    "gradient": GradientInference(k=2, starts=16, steps=300, lr=0.05, lr_min=1e-3, optimizer="adam", dedup=0.05,
                                  y_space=WELL_BOX),
}


@pytest.mark.parametrize("name", METHODS)
def test_finds_both_wells_best_first(name):
    x = torch.tensor([[-1.0], [0.0], [1.0]])
    cands = METHODS[name](DoubleWell(), x)
    a = 0.7 + 0.2 * x[:, 0]
    assert cands.y.shape == (3, 2, 1) and cands.mask.all()
    # the tilt makes y = -a slightly lower: it comes first
    assert torch.allclose(cands.y[:, 0, 0], -a, atol=0.03)
    assert torch.allclose(cands.y[:, 1, 0], a, atol=0.03)
    assert (cands.energy[:, 0] <= cands.energy[:, 1]).all()
    assert cands.evaluations > 0


def test_single_well_leaves_extra_slots_masked():
    class Bowl(Energy):
        def forward(self, x, y):
            return (y[:, 0] - 0.3) ** 2

    box = BoxSpace(-1.0, 1.0, (1,))
    for method in (GridInference(3, 201, 0.02, y_space=box),
                   GradientInference(3, 8, 200, 0.05, 1e-3, "adam", 0.02, y_space=box)):
        cands = method(Bowl(), torch.zeros(2, 1))
        assert cands.mask.tolist() == [[True, False, False]] * 2
        assert torch.allclose(cands.y[:, 0, 0], torch.tensor(0.3), atol=0.01)


def test_select_distinct_is_greedy_by_energy():
    y = torch.tensor([[[0.0], [0.01], [1.0], [1.005], [2.0]]])
    e = torch.tensor([[3.0, 1.0, 2.0, float("inf"), 0.5]])
    cands = select_distinct(y, e, k=4, tol=0.05)
    assert cands.y[0, :3, 0].tolist() == pytest.approx([2.0, 0.01, 1.0])
    assert cands.mask[0].tolist() == [True, True, True, False]


@pytest.mark.parametrize("preset", [(), ("experiment=video_latent",)])
def test_evaluation_in_chunks_is_evaluation_at_once(preset, monkeypatch):
    """The held-out inputs are searched CHUNK at a time (thousands of big frames at once would not
    fit): the candidates, the metrics and the latent usage are those of one search over all."""
    from ebm_cli.build import build_run
    from ebm_cli.tasks import evaluate
    from helpers import make_cfg

    run = build_run(make_cfg(*preset, "debug=smoke"))
    whole = evaluate.evaluate_model(run.energy, run.inference, run.data, run.device)
    monkeypatch.setattr(evaluate, "CHUNK", 4)
    chunked = evaluate.evaluate_model(run.energy, run.inference, run.data, run.device)
    # (a convolution over fewer inputs may sum in another order: equal to float precision)
    assert torch.allclose(whole["candidates"].y, chunked["candidates"].y, atol=1e-5)
    assert whole["candidates"].evaluations == chunked["candidates"].evaluations
    timing = ("infer_time_s",)
    assert {k: v for k, v in whole["metrics"].items() if k not in timing} == pytest.approx(
        {k: v for k, v in chunked["metrics"].items() if k not in timing})
