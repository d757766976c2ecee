"""Sentence metrics: token mismatches as the distance, multi-reference and pairwise BLEU (sacrebleu)."""

from typing import Callable, Dict, List

import sacrebleu
import torch

from ebm_cli.core.metrics import multi_output_metrics


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


def translation_metrics(y: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, valid_mask: torch.Tensor, eps: float,
                        decode: Callable[[torch.Tensor], str], bleu: bool = True) -> Dict[str, float]:
    """Exact-match coverage and precision (eps = 0), references covered per source, and with `bleu`
    the multi-reference BLEU of the best candidate and the pairwise BLEU between a source's
    candidates. y: (M, P, T) token ids."""
    metrics = multi_output_metrics(y, mask, valid, valid_mask, eps, distance=token_mismatches)
    refs_per_source = float(valid_mask.sum(1).double().mean())
    metrics["refs_covered"] = metrics[f"coverage@{eps:g}"] * refs_per_source  # covered pairs / sources
    metrics["refs_per_source"] = refs_per_source
    if not bleu:
        return metrics
    outputs = [[decode(y[i, j]) for j in range(y.shape[1]) if mask[i, j]] for i in range(len(y))]
    references = [[decode(v) for v, m in zip(valid[i], valid_mask[i]) if m] for i in range(len(y))]
    metrics["bleu"] = multi_reference_bleu([o[0] for o in outputs], references)
    metrics["pairwise_bleu"] = pairwise_bleu(outputs)
    return metrics
