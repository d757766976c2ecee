"""The multi-output metrics against values computed by hand."""

import pytest
import torch

from ebm_cli.core.metrics import multi_output_metrics


def test_hand_computed_case():
    # x0: valid {0, 1}, predictions {0.01, 0.5};  x1: valid {2}, predictions {2.2, (masked 9)}
    pred = torch.tensor([[[0.01], [0.5]], [[2.2], [9.0]]])
    pred_mask = torch.tensor([[True, True], [True, False]])
    valid = torch.tensor([[[0.0], [1.0]], [[2.0], [0.0]]])
    valid_mask = torch.tensor([[True, True], [True, False]])
    m = multi_output_metrics(pred, pred_mask, valid, valid_mask, eps=0.05)
    # valid pairs: (x0,0) covered by 0.01; (x0,1) nearest pred 0.5 -> no; (x1,2) nearest 2.2 -> no
    assert m["coverage@0.05"] == pytest.approx(1 / 3)
    # predicted pairs: 0.01 ok; 0.5 (0.5 away) no; 2.2 (0.2 away) no
    assert m["precision@0.05"] == pytest.approx(1 / 3)
    # chamfer x0: preds->valid (0.01 + 0.5)/2 = 0.255, valid->preds (0.01 + 0.5)/2 = 0.255 -> 0.255
    #         x1: 0.2 both ways -> 0.2 ; mean = 0.2275
    assert m["chamfer"] == pytest.approx(0.2275)
    # best-of-k: x0 0.01, x1 0.2 -> 0.105
    assert m["best_of_k"] == pytest.approx(0.105)
    assert m["candidates_per_x"] == pytest.approx(1.5)


def test_larger_eps_covers_more():
    pred = torch.tensor([[[0.0], [0.5]]])
    valid = torch.tensor([[[0.1], [0.6], [3.0]]])
    ones_p, ones_v = torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool)
    small = multi_output_metrics(pred, ones_p, valid, ones_v, eps=0.05)
    large = multi_output_metrics(pred, ones_p, valid, ones_v, eps=0.2)
    assert small["coverage@0.05"] == 0 and small["precision@0.05"] == 0
    assert large["coverage@0.2"] == pytest.approx(2 / 3) and large["precision@0.2"] == 1


def test_mean_predictor_misses_branches():
    """A single prediction at the mean of three separated branches covers none of them."""
    valid = torch.tensor([[[-1.0], [0.1], [1.0]]])
    pred = valid.mean(dim=1, keepdim=True) + 0.3
    m = multi_output_metrics(pred, torch.ones(1, 1, dtype=torch.bool), valid, torch.ones(1, 3, dtype=torch.bool), 0.05)
    assert m["coverage@0.05"] == 0.0
