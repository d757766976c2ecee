"""Multi-output metrics (DESIGN.md section 4), the same definitions for every dataset.

For test inputs x with valid sets V(x) and predicted candidates P(x):
  coverage@eps  share of all (x, v in V(x)) pairs with some p in P(x) within eps of v
  precision@eps share of all (x, p in P(x)) pairs within eps of some v in V(x)
  chamfer       mean over x of (mean_p min_v d + mean_v min_p d) / 2
  best_of_k     mean over x of min_p min_v d
Distances: Euclidean |dy| for curves, per-pixel MSE for video frames (which also report how sharp
the predictions are against the true frames), mismatched tokens for translations (eps = 0: exact
match; they also report BLEU through sacrebleu).
"""

from typing import Callable, Dict, List

import sacrebleu
import torch

from ebm_cli.data.translation import TranslationData
from ebm_cli.data.video import VideoData, mse_distance, sharpness_ratio

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
) -> Dict[str, float]:
    """pred: (M, P, *shape) with pred_mask (M, P); valid: (M, V, *shape) with valid_mask (M, V)."""
    d = distance(pred, valid)  # (M, P, V)
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    d = torch.where(pred_mask[:, :, None] & valid_mask[:, None, :], d, inf)
    nearest_valid = d.min(dim=2).values  # (M, P): each prediction to its closest valid y
    nearest_pred = d.min(dim=1).values  # (M, V): each valid y to its closest prediction
    n_pred, n_valid = pred_mask.sum(1), valid_mask.sum(1)
    coverage = ((nearest_pred <= eps) & valid_mask).sum() / valid_mask.sum()
    precision = ((nearest_valid <= eps) & pred_mask).sum() / pred_mask.sum().clamp(min=1)
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    mean_pv = torch.where(pred_mask, nearest_valid, zero).sum(1) / n_pred.clamp(min=1)
    mean_vp = torch.where(valid_mask, nearest_pred, zero).sum(1) / n_valid.clamp(min=1)
    chamfer = ((mean_pv + mean_vp) / 2).mean()
    best = nearest_valid.min(dim=1).values.mean()
    tag = f"{eps:g}"
    return {
        f"coverage@{tag}": float(coverage),
        f"precision@{tag}": float(precision),
        "chamfer": float(chamfer),
        "best_of_k": float(best),
        "candidates_per_x": float(n_pred.double().mean()),
    }


def score_candidates(data, y: torch.Tensor, mask: torch.Tensor, eps: float) -> Dict[str, float]:
    """The metrics of candidates y: (M, P, *y_shape) with mask (M, P) for data's held-out inputs,
    with the data's own distance (and, for frames, the sharpness ratio)."""
    y, mask = y.cpu(), mask.cpu()
    if isinstance(data, TranslationData):
        return translation_metrics(data, y, mask, eps)
    if not isinstance(data, VideoData):
        return multi_output_metrics(y, mask, data.valid, data.valid_mask, eps)
    metrics = multi_output_metrics(y, mask, data.valid, data.valid_mask, eps, distance=mse_distance)
    metrics["sharpness_ratio"] = sharpness_ratio(y, mask, data.valid, data.valid_mask)
    return metrics


def token_mismatches(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Padded token sequences a: (M, P, T), b: (M, V, T) -> (M, P, V) positions that differ (0 = the
    same sentence: after the end-of-sentence symbol both are padding)."""
    return (a.unsqueeze(2) != b.unsqueeze(1)).sum(-1).double()


def multi_reference_bleu(hypotheses: List[str], references: List[List[str]]) -> float:
    """Corpus BLEU (sacrebleu) of one hypothesis per source against that source's references, whose
    number may vary: a missing reference is filled with one of the source's own (which sacrebleu's
    authors note leaves BLEU unchanged)."""
    n = max(len(r) for r in references)
    streams = [[refs[min(j, len(refs) - 1)] for refs in references] for j in range(n)]
    return float(sacrebleu.corpus_bleu(hypotheses, streams).score)


def pairwise_bleu(outputs: List[List[str]]) -> float:
    """Diversity of each source's outputs: corpus BLEU of every output against every other output of
    the same source (all ordered pairs). 100 = identical outputs; lower = more diverse. Sources with
    one output have no pair; with none anywhere the outputs are as alike as can be: 100."""
    hyps, refs = [], []
    for out in outputs:
        for i, a in enumerate(out):
            for j, b in enumerate(out):
                if i != j:
                    hyps.append(a)
                    refs.append(b)
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score) if hyps else 100.0


def translation_metrics(data, y: torch.Tensor, mask: torch.Tensor, eps: float) -> Dict[str, float]:
    """Exact-match coverage and precision (eps = 0), references covered per source, multi-reference
    BLEU of the best candidate, pairwise BLEU between a source's candidates. y: (M, P, T) token ids."""
    metrics = multi_output_metrics(y, mask, data.valid, data.valid_mask, eps, distance=token_mismatches)
    refs_per_source = float(data.valid_mask.sum(1).double().mean())
    metrics["refs_covered"] = metrics[f"coverage@{eps:g}"] * refs_per_source  # covered pairs / sources
    metrics["refs_per_source"] = refs_per_source
    outputs = [[data.decode(y[i, j]) for j in range(y.shape[1]) if mask[i, j]] for i in range(len(y))]
    references = [[data.decode(v) for v, m in zip(data.valid[i], data.valid_mask[i]) if m] for i in range(len(y))]
    metrics["bleu"] = multi_reference_bleu([o[0] for o in outputs], references)
    metrics["pairwise_bleu"] = pairwise_bleu(outputs)
    return metrics
