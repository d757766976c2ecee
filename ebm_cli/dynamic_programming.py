"""Dynamic programming on chain-structured energies over discrete sequences y = (y_1, ..., y_T):

    E(y) = sum_t u[t, y_t] + sum_{t>1} p[t, y_{t-1}, y_t]

with unary terms u: (B, T, S) and pairwise terms p: (B, T-1, S, S), or (B, S, S) shared by the
steps of each sequence, or (S, S) shared by every step and sequence. Min-sum (Viterbi) gives the
argmin and the k best sequences; sum-product (the forward algorithm) gives
F_beta = -1/beta log sum_y exp(-beta E(y)) over all S^T sequences. All are batched and vectorised
over the batch and the states; the loop over t only queues tensor operations (no value is read
back to the host inside it). On the CPU the loops run on one thread (runtime/threads.py): their T
small steps would otherwise wait at every step for a thread that a busy core has descheduled.
"""

import functools
import math
from typing import Tuple

import torch

from ebm_cli.runtime.threads import one_thread


def _on_one_thread(fn):
    """Run fn (whose first argument is the unary terms u) on one thread where u is on the CPU."""
    @functools.wraps(fn)
    def wrapper(u, *args, **kwargs):
        with one_thread(u.device):
            return fn(u, *args, **kwargs)
    return wrapper


def _pairwise_at(p: torch.Tensor, t: int, batch: int) -> torch.Tensor:
    """Transition energies into step t (t >= 1): (B, S, S), indexed [previous, next]."""
    if p.dim() == 2:
        return p.unsqueeze(0).expand(batch, *p.shape)
    if p.dim() == 3:
        return p
    return p[:, t - 1]


def forward_free_energy(u: torch.Tensor, p: torch.Tensor, beta: float, method: str = "auto") -> torch.Tensor:
    """F_beta over all sequences (*lead,): the sequential forward algorithm (_forward), or the scan of
    its transfer matrices in depth log T (forward_free_energy_scan) where `method` (use_scan) says."""
    if use_scan(u, method):
        return forward_free_energy_scan(u, p, beta)
    return _forward(u, p, beta)


@_on_one_thread
def _forward(u: torch.Tensor, p: torch.Tensor, beta: float) -> torch.Tensor:
    """F_beta over all sequences: (*lead,) for unary terms u: (*lead, T, S), e.g. (B, T, S); beta=inf
    gives min_y E(y) (the Viterbi energy).

    p may be (S, S) for every sequence and step; (*lead, S, S) per sequence; (*lead, T-1, S, S) per
    sequence and step; or, for u: (G, B, T, S), (G, S, S): one table per group (a chain's modes),
    shared by the B sequences of the group, so that each step is one (B, S) x (S, S) product per
    group. Each step uses the scaled form of the forward algorithm, in probabilities normalised at
    every step (s_t = exp(alpha_t - log n_1 ... n_t), its largest entry 1):

        alpha_t[j] = log sum_i exp(alpha_{t-1}[i] - beta p[i, j]) - beta u[t, j]
        s_t[j]     = (sum_i s_{t-1}[i] exp(-beta p[i, j] - c_j)) exp(-beta u[t, j] + c_j - m_t) / n_t

    with c_j = max_i -beta p[i, j], m_t = max_j (-beta u[t, j] + c_j) and n_t the largest entry
    before the division, so every exponential is at most 1, and log Z = log sum_j s_T[j] + sum_t
    (m_t + log n_t). exp(-beta p - c) is taken once for shared tables, and the products run in
    float64, whose range (e^-745) keeps any transition within 700 nats of its column's best exact;
    worse ones (hard constraints, p = 1e9) count as e^-700, which changes log Z by less than float32
    can show. The result equals log-sum-exp over (S, S) at every step up to rounding, at the cost of
    one matrix product, one exponential of (B, S) and no logarithm per step instead of S^2
    exponentials and logarithms. Above beta = 1 (where beta p spans more than 700 nats sooner), or
    should a step's products underflow all the same, the log-sum-exp form runs instead.
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
    shift = alpha.detach().amax(dim=-1, keepdim=True)  # (*lead, 1)
    scaled = torch.exp(alpha - shift)  # s_1: (*lead, S), at most 1
    shifts, norms = [shift], []  # m_t and n_t: (*lead, 1) each, summed (and logged) once at the end
    for t in range(1, steps):
        w, c = (weights[..., t - 1, :, :], col[..., t - 1, :]) if per_step else (weights, col)
        unary = torch.add(c, u[..., t, :], alpha=-beta)  # -beta u[t] + c: (*lead, S), float64 as c is
        m = unary.detach().amax(dim=-1, keepdim=True)
        total = (scaled.unsqueeze(-2) @ w).squeeze(-2) if per_sequence else scaled @ w  # (*lead, S)
        # float64 and no floor: the mass arriving at two states may differ by e^700, so a state far
        # below its step's best may still carry the most (a floor at e^-80 gave a wrong log Z)
        total = total * torch.exp(unary - m)
        n = total.detach().amax(dim=-1, keepdim=True)  # a constant: log Z's gradient is unchanged
        scaled = total / n
        shifts.append(m)
        norms.append(n)
    log_z = torch.log(scaled.sum(dim=-1)) + torch.cat(shifts, dim=-1).sum(dim=-1)
    if norms:
        log_z = log_z + torch.log(torch.cat(norms, dim=-1)).sum(dim=-1)
    if not bool(torch.isfinite(log_z.detach()).all()):  # products that underflowed: the exact form
        return _forward_log_sum_exp(u, p, beta)
    return (-log_z / beta).to(u.dtype)


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


def viterbi(u: torch.Tensor, p: torch.Tensor, method: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """The minimum-energy sequence: energies (B,) and paths (B, T): sequential (_viterbi) or a scan in
    depth log T (viterbi_scan) where `method` (use_scan) says."""
    if use_scan(u, method):
        return viterbi_scan(u, p)
    return _viterbi(u, p)


@_on_one_thread
def _viterbi(u: torch.Tensor, p: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The minimum-energy sequence: energies (B,) and paths (B, T) of state indices, for u: (B, T, S)
    and p: (S, S), (B, S, S) or (B, T-1, S, S).

    Min-sum keeping the best prefix energy of every state and step (B, S) rather than a back-pointer
    per state: the minimum alone is several times cheaper than the minimum with its index, and the
    way back needs the index only along the path: at step t, argmin_i score_{t-1}[i] + p[i, y_t],
    the same sums as the forward pass, so the same choice."""
    b, steps, s = u.shape
    score = u[:, 0]  # (B, S): the best prefix energy ending in each state
    scores = [score]
    for t in range(1, steps):
        score = (score.unsqueeze(2) + _pairwise_at(p, t, b)).amin(dim=1) + u[:, t]  # over the previous state
        scores.append(score)
    return _backtrack(scores, p)


def _backtrack(scores, p: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The best energies (B,) and paths (B, T) from the best prefix energies of every step, scores[t]:
    (B, S): y_T = argmin scores[T-1], then y_{t-1} = argmin_i scores[t-1][i] + p[i, y_t]."""
    b, s = scores[0].shape
    energy, state = scores[-1].min(dim=1)  # (B,)
    path = [state]
    for t in range(len(scores) - 1, 0, -1):
        into = _pairwise_at(p, t, b).gather(2, state.view(b, 1, 1).expand(b, s, 1)).squeeze(2)  # (B, S): p[i, y_t]
        state = (scores[t - 1] + into).argmin(dim=1)
        path.append(state)
    return energy, torch.stack(path[::-1], dim=1)


@_on_one_thread
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


# -- the same in depth log T: associative scans of the steps' transfer matrices ----------------------
# The sequential loops above run T dependent steps of O(B S^2) work; a GPU spends most of that in T
# kernel launches. The steps' transfer matrices M_t[i, j] = -beta (p[i, j] + u[t, j]) (log-sum-exp
# semiring) or p[i, j] + u[t, j] (min-plus) combine associatively, so a tree of log2 T levels of
# batched (S x S) products gives the same result: O(B T S^3) work instead of O(B T S^2), worth it on
# a GPU for long chains of few states, never on a CPU. `method="auto"` picks by device and size.
SCAN_ELEMENTS = 1 << 27  # the largest B * T * S^3 / chunk a scan level may hold at once (float64: 1 GiB)


def use_scan(u: torch.Tensor, method: str) -> bool:
    """sequential | scan | auto (the scan on a GPU, for T >= 64 and S <= 64, within SCAN_ELEMENTS)."""
    if method not in ("auto", "sequential", "scan"):
        raise ValueError(f"method={method}: must be auto, sequential or scan")
    if method != "auto":
        return method == "scan"
    steps, states = u.shape[-2:]
    return u.device.type == "cuda" and steps >= 64 and states <= 64 and u[..., 0, 0].numel() * steps * states ** 2 <= SCAN_ELEMENTS


def _transfer(u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The steps' transfer energies p[i, j] + u[t, j] into steps 1..T-1: (*lead, T-1, S, S) for u:
    (*lead, T, S) and p: (S, S), (*lead, S, S), (G, S, S) for u (G, B, T, S), or (*lead, T-1, S, S)."""
    lead = u.shape[:-2]
    if p.dim() == u.dim() - 1 and u.dim() > 3:  # one table per group: give every sequence its group's
        p = p.unsqueeze(-3).expand(*lead, *p.shape[-2:])
    if p.dim() < u.dim() + 1:  # one table for every step
        p = p.unsqueeze(-3)
    return p + u[..., 1:, None, :]


def _log_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a (x) b)[i, k] = log sum_j exp(a[i, j] + b[j, k]) for (..., S, S) log-weights, as one matrix
    product of exponentials shifted by a's row and b's column maxima (float64)."""
    row = a.detach().amax(dim=-1, keepdim=True)
    col = b.detach().amax(dim=-2, keepdim=True)
    row = torch.where(torch.isfinite(row), row, torch.zeros_like(row))
    col = torch.where(torch.isfinite(col), col, torch.zeros_like(col))
    # floored at e^-700 as in the sequential form: a forbidden move (p = 1e9) weighs e^-700, not 0,
    # so that no logarithm meets a zero (whose gradient would be NaN)
    return torch.log(torch.exp((a - row).clamp(min=-700.0)) @ torch.exp((b - col).clamp(min=-700.0))) + row + col


def _min_plus(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a (x) b)[i, k] = min_j a[i, j] + b[j, k] for (..., S, S), j in chunks (the broadcast sum holds
    (..., S, chunk, S) at once)."""
    s = a.shape[-1]
    chunk = max(1, min(s, SCAN_ELEMENTS // max(1, a.numel() * s)))
    out = None
    for j in range(0, s, chunk):
        part = (a[..., :, j:j + chunk, None] + b[..., None, j:j + chunk, :]).amin(dim=-2)
        out = part if out is None else torch.minimum(out, part)
    return out


def _reduce(m: torch.Tensor, combine) -> torch.Tensor:
    """m_1 (x) m_2 (x) ... (x) m_N for m: (..., N, S, S): a tree of ceil(log2 N) levels -> (..., S, S)."""
    while m.shape[-3] > 1:
        n = m.shape[-3]
        pairs = combine(m[..., 0:n - 1:2, :, :], m[..., 1:n:2, :, :])
        m = torch.cat([pairs, m[..., n - 1:, :, :]], dim=-3) if n % 2 else pairs
    return m[..., 0, :, :]


def _prefix(m: torch.Tensor, combine) -> torch.Tensor:
    """Inclusive prefix products m_1 (x) ... (x) m_t for every t (Hillis-Steele: ceil(log2 N) levels)."""
    n, shift = m.shape[-3], 1
    while shift < n:
        m = torch.cat([m[..., :shift, :, :], combine(m[..., :n - shift, :, :], m[..., shift:, :, :])], dim=-3)
        shift *= 2
    return m


def forward_free_energy_scan(u: torch.Tensor, p: torch.Tensor, beta: float) -> torch.Tensor:
    """forward_free_energy in depth log T: F_beta (*lead,) as a tree of log-semiring matrix products
    (float64). beta=inf gives the Viterbi energy (viterbi_scan)."""
    if math.isinf(beta):
        return viterbi_scan(u, p)[0]
    alpha = (-beta * u[..., 0, :]).double()  # (*lead, S)
    if u.shape[-2] > 1:
        total = _reduce((-beta * _transfer(u, p)).double(), _log_product)  # (*lead, S, S)
        alpha = torch.logsumexp(alpha.unsqueeze(-1) + total, dim=-2)
    return (-torch.logsumexp(alpha, dim=-1) / beta).to(u.dtype)


def viterbi_scan(u: torch.Tensor, p: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """viterbi with the best prefix energies of every step from a prefix scan of min-plus products
    (depth log T), energies (B,) and paths (B, T); the path comes back from them by the same
    backtracking as the sequential form (T gathers of (B, S), no products), so that it is a path of
    its energy even where several are best."""
    b, steps, s = u.shape
    if steps == 1:
        energy, state = u[:, 0].min(dim=1)
        return energy, state.unsqueeze(1)
    forward = _prefix(_transfer(u, p), _min_plus)  # [t-1]: steps 1..t, (B, T-1, S, S)
    prefix = torch.cat([u[:, :1], (u[:, 0, None, :, None] + forward).amin(dim=2)], dim=1)  # (B, T, S)
    return _backtrack(prefix.unbind(1), p)
