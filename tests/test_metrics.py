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


# -- frames: PSNR and SSIM of the best of k ----------------------------------------------------------
def test_psnr_and_ssim_of_the_best_of_k_are_the_librarys_on_the_best_pairs():
    """Known pairs: a frame off by 0.1 everywhere has PSNR 20 dB; the best of k candidates is the
    one closest to each valid future, and its numbers are scikit-image's own on that pair."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from ebm_cli.datasets.video.metrics import best_of_k_quality

    gen = torch.Generator().manual_seed(0)
    future = torch.rand(2, 1, 16, 16, generator=gen)  # M = 2 inputs, one valid future each
    off = future + 0.1 * torch.where(future > 0.5, -1.0, 1.0)  # off by exactly 0.1 everywhere
    noisy = (future + 0.3 * torch.randn(future.shape, generator=gen)).clamp(0, 1)
    pred = torch.cat([noisy, off], dim=1)  # (2, 2, 16, 16): the better candidate second
    one = torch.ones(2, 1, dtype=torch.bool)
    quality = best_of_k_quality(pred, torch.ones(2, 2, dtype=torch.bool), future, one, 1.0)
    assert quality["psnr_best"] == pytest.approx(20.0, abs=1e-3)
    expected = sum(structural_similarity(future[i, 0].double().numpy(), off[i, 0].double().numpy(), data_range=1.0)
                   for i in range(2)) / 2
    assert quality["ssim_best"] == pytest.approx(expected, abs=1e-9)
    assert peak_signal_noise_ratio(future[0, 0].numpy(), noisy[0, 0].numpy(), data_range=1.0) < 20.0  # not taken
    # a masked-out candidate is never the best, however close it is
    only_noisy = best_of_k_quality(pred, torch.tensor([[True, False], [True, False]]), future, one, 1.0)
    assert only_noisy["psnr_best"] < 20.0
    # an exact prediction: 100 dB (not infinity) and SSIM 1
    assert best_of_k_quality(future, one, future, one, 1.0) == pytest.approx({"psnr_best": 100.0, "ssim_best": 1.0})
    # several valid futures: each takes its own best candidate
    two = torch.cat([future[:1], off[:1]], dim=1)  # input 0 has both as valid futures
    both = best_of_k_quality(two, torch.ones(1, 2, dtype=torch.bool), two, torch.ones(1, 2, dtype=torch.bool), 1.0)
    assert both == pytest.approx({"psnr_best": 100.0, "ssim_best": 1.0})


def test_metrics_taken_a_few_inputs_at_a_time_equal_those_taken_at_once():
    """A file whose x values hold thousands of rows each is measured in slices of x (bounded
    memory): the same numbers as all at once, for any slice size."""
    gen = torch.Generator().manual_seed(0)
    pred, valid = torch.randn(50, 16, 1, generator=gen), torch.randn(50, 40, 1, generator=gen)
    pred_mask, valid_mask = torch.rand(50, 16, generator=gen) > 0.3, torch.rand(50, 40, generator=gen) > 0.2
    valid_mask[:, 0] = True
    whole = multi_output_metrics(pred, pred_mask, valid, valid_mask, 0.3)
    for max_pairs in (1, 7, 640, 5000):
        sliced = multi_output_metrics(pred, pred_mask, valid, valid_mask, 0.3, max_pairs=max_pairs)
        assert sliced == pytest.approx(whole, rel=1e-12)
