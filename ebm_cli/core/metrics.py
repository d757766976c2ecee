"""Multi-output metrics, the same definitions for every data kind.

For test inputs x with valid sets V(x) and predicted candidates P(x):
  coverage@eps  share of all (x, v in V(x)) pairs with some p in P(x) within eps of v
  precision@eps share of all (x, p in P(x)) pairs within eps of some v in V(x)
  chamfer       mean over x of (mean_p min_v d + mean_v min_p d) / 2
  best_of_k     mean over x of min_p min_v d
The distance d is the data kind's own (Euclidean for curves, per-pixel MSE for frames,
mismatched tokens for sentences).
"""

from typing import Callable, Dict

import torch

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a: (M, P, *shape), b: (M, V, *shape) -> (M, P, V) Euclidean distances (|dy| for 1-D y)."""
    return torch.cdist(a.flatten(2).double(), b.flatten(2).double())


def multi_output_metrics(
    pred: torch.Tensor,
    pred_mask: torch.Tensor,
    valid: torch.Tensor,
    valid_mask: torch.Tensor,
    eps: float,
    distance: Distance = euclidean,
    max_pairs: int = 2**23,
) -> Dict[str, float]:
    """pred: (M, P, *shape) with pred_mask (M, P); valid: (M, V, *shape) with valid_mask (M, V).

    The (x, p, v) distances are taken for a few x at a time (at most max_pairs of them at once): a
    file whose x values each hold thousands of rows needs no more memory than a small one.
    """
    m, p, v = len(pred), pred.shape[1], valid.shape[1]
    step = max(1, max_pairs // max(1, p * v))
    totals = torch.zeros(6, dtype=torch.float64, device="cpu")  # covered, valid, precise, predicted, chamfer sum, best sum
    for s in range(0, m, step):
        totals += _sums(pred[s:s + step], pred_mask[s:s + step], valid[s:s + step], valid_mask[s:s + step], eps, distance)
    covered, n_valid, precise, n_pred, chamfer, best = totals.tolist()
    tag = f"{eps:g}"
    return {
        f"coverage@{tag}": covered / n_valid if n_valid else float("nan"),
        f"precision@{tag}": precise / max(n_pred, 1.0),
        "chamfer": chamfer / m if m else float("nan"),
        "best_of_k": best / m if m else float("nan"),
        "candidates_per_x": n_pred / m if m else float("nan"),
    }


def _sums(pred, pred_mask, valid, valid_mask, eps: float, distance: Distance) -> torch.Tensor:
    """The sums over these x that the metrics are ratios of (see multi_output_metrics), as a (6,) tensor."""
    d = distance(pred, valid)  # (M, P, V)
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    d = torch.where(pred_mask[:, :, None] & valid_mask[:, None, :], d, inf)
    nearest_valid = d.min(dim=2).values  # (M, P): each prediction to its closest valid y
    nearest_pred = d.min(dim=1).values  # (M, V): each valid y to its closest prediction
    n_pred, n_valid = pred_mask.sum(1), valid_mask.sum(1)
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    mean_pv = torch.where(pred_mask, nearest_valid, zero).sum(1) / n_pred.clamp(min=1)
    mean_vp = torch.where(valid_mask, nearest_pred, zero).sum(1) / n_valid.clamp(min=1)
    return torch.stack([
        ((nearest_pred <= eps) & valid_mask).sum().double(), valid_mask.sum().double(),
        ((nearest_valid <= eps) & pred_mask).sum().double(), pred_mask.sum().double(),
        ((mean_pv + mean_vp) / 2).sum().double(), nearest_valid.min(dim=1).values.sum().double(),
    ]).cpu()
