"""Distances and quality measures of predicted frames."""

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
