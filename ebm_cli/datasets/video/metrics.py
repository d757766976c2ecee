"""Distances and quality measures of predicted frames."""

import numpy as np
import torch


def mse_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel MSE between frames a: (M, P, H, W) and b: (M, V, H, W) -> (M, P, V)."""
    a, b = a.flatten(2).double(), b.flatten(2).double()
    return (a.pow(2).sum(-1)[:, :, None] + b.pow(2).sum(-1)[:, None, :] - 2 * a @ b.transpose(1, 2)).clamp(min=0) / a.shape[-1]


def sharpness(frames: torch.Tensor) -> torch.Tensor:
    """Root-mean-square spatial gradient magnitude of frames (..., H, W) (the Tenengrad focus
    measure). Squared, not absolute: the average of several translated sprites has the same total
    variation (mean |gradient|) as one sharp sprite, but a third of its gradient energy."""
    dy = frames[..., 1:, :-1] - frames[..., :-1, :-1]
    dx = frames[..., :-1, 1:] - frames[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).mean().sqrt()


def sharpness_ratio(pred: torch.Tensor, pred_mask: torch.Tensor, valid: torch.Tensor, valid_mask: torch.Tensor) -> float:
    """Sharpness of the predictions over that of the true frames (1 = as sharp; the mean of three
    separate futures, the MSE regressor's blur, scores sqrt(1/3) = 0.58)."""
    return float(sharpness(pred[pred_mask]) / sharpness(valid[valid_mask]).clamp(min=1e-12))


def best_of_k_quality(pred: torch.Tensor, pred_mask: torch.Tensor, valid: torch.Tensor, valid_mask: torch.Tensor,
                      data_range: float) -> dict:
    """PSNR and SSIM of the best of the k predictions for each valid future, as stochastic video
    prediction papers report them (SVG, SAVP: the best of k samples per frame), averaged over the
    (input, valid future) pairs. pred (M, P, H, W) with pred_mask (M, P); valid (M, V, H, W) with
    valid_mask (M, V). scikit-image computes both, SSIM with its defaults (a 7 x 7 window), as
    those papers' code did. A prediction equal to its future would have an infinite PSNR: it counts
    as 100 dB."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = pred.double().numpy(), valid.double().numpy()
    m, p = pred_mask.shape
    win = min(7, *(n - (1 - n % 2) for n in a.shape[2:]))  # odd, no bigger than the frame
    psnr_best, ssim_best = [], []
    for i in range(m):
        for j in range(valid.shape[1]):
            if not valid_mask[i, j]:
                continue
            psnr = [min(100.0, peak_signal_noise_ratio(b[i, j], a[i, c], data_range=data_range)) if (a[i, c] != b[i, j]).any()
                    else 100.0 for c in range(p) if pred_mask[i, c]]
            ssim = [structural_similarity(b[i, j], a[i, c], data_range=data_range, win_size=win) for c in range(p)
                    if pred_mask[i, c]]
            psnr_best.append(max(psnr))
            ssim_best.append(max(ssim))
    return {"psnr_best": float(np.mean(psnr_best)), "ssim_best": float(np.mean(ssim_best))}
