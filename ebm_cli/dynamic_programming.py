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
    """F_beta over all sequences: (*lead,) for unary terms u: (*lead, T, S), e.g. (B, T, S); beta=inf
    gives min_y E(y) (the Viterbi energy).

    p may be (S, S) for every sequence and step; (*lead, S, S) per sequence; (*lead, T-1, S, S) per
    sequence and step; or, for u: (G, B, T, S), (G, S, S): one table per group (a chain's modes),
    shared by the B sequences of the group, so that each step is one (B, S) x (S, S) product per
    group. Each step uses the scaled form of the forward algorithm:

        alpha_t[j] = log sum_i exp(alpha_{t-1}[i] - beta p[i, j]) - beta u[t, j]
                   = a + c_j + log sum_i exp(alpha_{t-1}[i] - a) exp(-beta p[i, j] - c_j) - beta u[t, j]

    with a = max_i alpha_{t-1}[i] and c_j = max_i -beta p[i, j], so every exponential is at most 1.
    exp(-beta p - c) is taken once for shared tables, and the products run in float64, whose range
    (e^-745) keeps any transition within 700 nats of its column's best exact; worse ones (hard
    constraints, p = 1e9) count as e^-700, which changes log Z by less than float32 can show. The
    result equals log-sum-exp over (S, S) at every step up to rounding, at the cost of one matrix
    product per step instead of S^2 exponentials and logarithms. Above beta = 1 (where beta p
    spans more than 700 nats sooner) the log-sum-exp form runs instead.
    """
    if math.isinf(beta):
        return viterbi(u, p)[0]
    if beta > 1:  # beta p may span more than float64's range: log-sum-exp over (S, S) at every step
        return _forward_log_sum_exp(u, p, beta)
    steps = u.shape[-2]
    per_step = p.dim() == u.dim() + 1
    logits = (-beta * p).double()  # [previous, next]
    col = logits.amax(dim=-2, keepdim=True).detach()  # c_j: (..., 1, S), a constant shift
    col = torch.where(torch.isfinite(col), col, torch.zeros_like(col))  # a column of forbidden moves only
    weights = torch.exp((logits - col).clamp(min=-700.0))  # in (e^-700, 1]
    col = col.squeeze(-2)  # (..., S)
    per_sequence = p.dim() >= u.dim()  # a table (or one per step) for every sequence: batched (1, S) x (S, S)
    if not per_sequence and col.dim() > 1:
        col = col.unsqueeze(-2)  # (G, 1, S): one shift per group, shared by its sequences
    alpha = (-beta * u[..., 0, :]).double()  # (*lead, S): log sum over prefixes ending in each state of exp(-beta E)
    for t in range(1, steps):
        w, c = (weights[..., t - 1, :, :], col[..., t - 1, :]) if per_step else (weights, col)
        a = alpha.amax(dim=-1, keepdim=True).detach()  # (*lead, 1)
        scaled = torch.exp(alpha - a)  # (*lead, S), at most 1
        total = (scaled.unsqueeze(-2) @ w).squeeze(-2) if per_sequence else scaled @ w  # (*lead, S)
        alpha = a + c + torch.log(total) - beta * u[..., t, :].double()
    return (-torch.logsumexp(alpha, dim=-1) / beta).to(u.dtype)


def _forward_log_sum_exp(u: torch.Tensor, p: torch.Tensor, beta: float) -> torch.Tensor:
    """forward_free_energy by log-sum-exp over (B, S, S) at every step: exact for any beta > 0."""
    lead, (steps, s) = u.shape[:-2], u.shape[-2:]
    if u.dim() > 3 and p.dim() == u.dim() - 1:  # one table per group: give every sequence its group's
        p = p.unsqueeze(-3).expand(*lead, s, s)
    u = u.reshape(-1, steps, s)
    p = p if p.dim() == 2 else p.reshape(u.shape[0], *p.shape[len(lead):])
    b = u.shape[0]
    alpha = -beta * u[:, 0]  # (B, S)
    for t in range(1, steps):
        alpha = torch.logsumexp(alpha.unsqueeze(2) - beta * _pairwise_at(p, t, b), dim=1) - beta * u[:, t]
    return (-torch.logsumexp(alpha, dim=1) / beta).view(lead)


def viterbi(u: torch.Tensor, p: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The minimum-energy sequence: energies (B,) and paths (B, T) of state indices, for u: (B, T, S)
    and p: (S, S), (B, S, S) or (B, T-1, S, S). Min-sum with one back-pointer per state and step."""
    b, steps, _ = u.shape
    score = u[:, 0]  # (B, S): the best prefix energy ending in each state
    back = []
    for t in range(1, steps):
        score, prev = (score.unsqueeze(2) + _pairwise_at(p, t, b)).min(dim=1)  # over the previous state
        score = score + u[:, t]
        back.append(prev)  # (B, S): the best previous state of each state at step t
    energy, state = score.min(dim=1)  # (B,)
    path = [state]
    for prev in reversed(back):
        state = prev.gather(1, state.unsqueeze(1)).squeeze(1)
        path.append(state)
    return energy, torch.stack(path[::-1], dim=1)


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
