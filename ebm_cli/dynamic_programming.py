"""Dynamic programming on chain-structured energies over discrete sequences y = (y_1, ..., y_T):

    E(y) = sum_t u[t, y_t] + sum_{t>1} p[t, y_{t-1}, y_t]

with unary terms u: (B, T, S) and pairwise terms p: (B, T-1, S, S), or (B, S, S) shared by the
steps of each sequence, or (S, S) shared by every step and sequence. Min-sum (Viterbi) gives the
argmin and the k best sequences; sum-product (the forward algorithm) gives
F_beta = -1/beta log sum_y exp(-beta E(y)) over all S^T sequences. All are batched and vectorised
over the batch and the states; the loop over t only queues tensor operations (no value is read
back to the host inside it).
"""

import math
from typing import Tuple

import torch


def _pairwise_at(p: torch.Tensor, t: int, batch: int) -> torch.Tensor:
    """Transition energies into step t (t >= 1): (B, S, S), indexed [previous, next]."""
    if p.dim() == 2:
        return p.unsqueeze(0).expand(batch, *p.shape)
    if p.dim() == 3:
        return p
    return p[:, t - 1]


def forward_free_energy(u: torch.Tensor, p: torch.Tensor, beta: float) -> torch.Tensor:
    """F_beta over all sequences, (B,): the forward algorithm in the log domain; beta=inf gives
    min_y E(y) (the Viterbi energy). Stable for any beta > 0 (log-sum-exp)."""
    if math.isinf(beta):
        return viterbi(u, p)[0]
    b, steps, _ = u.shape
    alpha = -beta * u[:, 0]  # (B, S): log sum over prefixes ending in each state of exp(-beta E)
    for t in range(1, steps):
        alpha = torch.logsumexp(alpha.unsqueeze(2) - beta * _pairwise_at(p, t, b), dim=1) - beta * u[:, t]
    return -torch.logsumexp(alpha, dim=1) / beta


def viterbi(u: torch.Tensor, p: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The minimum-energy sequence: energies (B,) and paths (B, T) of state indices."""
    energies, paths = kbest_viterbi(u, p, 1)
    return energies[:, 0], paths[:, 0]


def kbest_viterbi(u: torch.Tensor, p: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The k lowest-energy sequences (list Viterbi): energies (B, k) ascending, paths (B, k, T).

    Keeps for every state the k best prefixes ending in it: (B, S, k) scores, and back-pointers to
    (previous state, its rank). With fewer than k sequences in all (S^T < k), the last ones are +inf.
    """
    b, steps, s = u.shape
    inf = torch.tensor(float("inf"), dtype=u.dtype, device=u.device)
    scores = torch.full((b, s, k), float("inf"), dtype=u.dtype, device=u.device)
    scores[:, :, 0] = u[:, 0]
    back_state, back_rank = [], []
    for t in range(1, steps):
        cand = scores.unsqueeze(2) + _pairwise_at(p, t, b).unsqueeze(3)  # (B, S_prev, S_next, k)
        cand = cand.permute(0, 2, 1, 3).reshape(b, s, s * k)  # per next state: (previous, rank) pairs
        best, idx = cand.topk(k, dim=2, largest=False)  # (B, S_next, k)
        scores = torch.where(torch.isfinite(best), best + u[:, t].unsqueeze(2), inf)
        back_state.append(idx // k)
        back_rank.append(idx % k)
    final, idx = scores.reshape(b, s * k).topk(k, dim=1, largest=False)  # (B, k)
    state, rank = idx // k, idx % k
    path = [state]
    for t in range(steps - 2, -1, -1):  # back-pointers into step t+1 were saved at index t
        flat = state * k + rank  # (B, k) positions in the (S, k) table of step t+1
        prev_state = back_state[t].reshape(b, s * k).gather(1, flat)
        rank = back_rank[t].reshape(b, s * k).gather(1, flat)
        state = prev_state
        path.append(state)
    return final, torch.stack(path[::-1], dim=2)


def sequence_energy(u: torch.Tensor, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(y) for paths y: (B, T) -> (B,)."""
    b, steps, _ = u.shape
    e = u.gather(2, y.unsqueeze(2)).squeeze(2).sum(1)
    for t in range(1, steps):
        e = e + _pairwise_at(p, t, b)[torch.arange(b, device=y.device), y[:, t - 1], y[:, t]]
    return e
