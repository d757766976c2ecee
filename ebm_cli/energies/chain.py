"""A chain-structured energy over target sequences, with a discrete latent mode z:

    E(x, y, z) = sum_t u(x, z)[t, y_t] + sum_{t>1} p(z)[y_{t-1}, y_t]

over the T padded target positions (an end-of-sentence symbol, then padding). u comes from a
bidirectional GRU over the source and one attention query per (position t, mode z); p is a learned
S x S transition table per mode. Being a sum of unary and pairwise terms, E admits exact inference
by dynamic programming: Viterbi for argmin_y, the forward algorithm for F_beta over all S^T
sequences (inference/dp.py).
"""

import math
from typing import Tuple

import torch
from torch import nn

from ebm_cli.inference.dp import forward_free_energy, sequence_energy


class ChainEnergy(nn.Module):
    """x: (B, Ls) source ids (0 pads); y: (B, T) target ids; z in {0, ..., K-1}.

    eliminate: how z leaves -log P(y | x, z): `min` (beta = inf, hard-EM style: each example trains
    the mode that explains it best) or `softmin` at the run's beta (soft-EM style: every mode in
    proportion to exp(-beta cost)); the trainer sets beta every step, so annealing beta upward
    goes from training every mode on everything to hard assignments.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, length: int, k: int, hidden: int, eliminate: str = "softmin"):
        super().__init__()
        self.k, self.length, self.states = k, length, tgt_vocab
        self.eliminate, self.beta = eliminate, 1.0
        self.embed = nn.Embedding(src_vocab, hidden, padding_idx=0)
        self.encoder = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.key = nn.Linear(2 * hidden, hidden)
        self.positions = nn.Parameter(0.5 * torch.randn(length, hidden))
        self.modes = nn.Parameter(0.5 * torch.randn(k, hidden))
        self.emit = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, tgt_vocab))
        self.transitions = nn.Parameter(torch.zeros(k, tgt_vocab, tgt_vocab))

    def set_beta(self, beta: float) -> None:
        self.beta = float(beta)

    def get_extra_state(self):
        return {"beta": self.beta}

    def set_extra_state(self, state) -> None:
        self.beta = float(state["beta"])

    def latent_potentials(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """u: (B, K, T, S) unary energies per mode; p: (K, S, S) transition energies [previous, next]."""
        h, _ = self.encoder(self.embed(x))  # (B, Ls, 2H)
        q = self.positions.unsqueeze(0) + self.modes.unsqueeze(1)  # (K, T, H)
        scores = torch.einsum("kth,blh->bktl", q, self.key(h)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill((x == 0)[:, None, None, :], float("-inf"))
        context = torch.einsum("bktl,blh->bkth", scores.softmax(-1), h)  # (B, K, T, 2H)
        u = -self.emit(torch.cat([context, q.unsqueeze(0).expand(x.shape[0], *q.shape)], dim=-1))
        return u, self.transitions

    def flat_potentials(self, x: torch.Tensor):
        """The K chains of every x as B*K chains: u (B*K, T, S), p (B*K, S, S)."""
        u, p = self.latent_potentials(x)
        b = x.shape[0]
        return u.reshape(b * self.k, self.length, self.states), p.unsqueeze(0).expand(b, *p.shape).reshape(b * self.k, *p.shape[1:])

    def mode_energies(self, x: torch.Tensor, y: torch.Tensor, potentials=None) -> torch.Tensor:
        """E(x_b, y_b, z) for every z: (B, K). potentials: flat_potentials(x), if already computed."""
        u, p = potentials if potentials is not None else self.flat_potentials(x)
        return sequence_energy(u, p, y.repeat_interleave(self.k, dim=0)).view(x.shape[0], self.k)

    def mode_free_energies(self, x: torch.Tensor, beta: float, potentials=None) -> torch.Tensor:
        """F_beta(x, z) = -1/beta log sum_y exp(-beta E(x, y, z)) over all S^T sequences: (B, K)."""
        u, p = potentials if potentials is not None else self.flat_potentials(x)
        return forward_free_energy(u, p, beta).view(x.shape[0], self.k)

    def mode_costs(self, x: torch.Tensor, y: torch.Tensor, potentials=None) -> torch.Tensor:
        """-log P(y | x, z) for every mode: (B, K). Each mode is a chain normalised on its own (the
        Gibbs distribution exp(-E(x, y, z)) / Z(x, z), Z by the forward algorithm), so the modes
        compete as a uniform mixture and none can win by sinking its partition function."""
        potentials = potentials if potentials is not None else self.flat_potentials(x)
        return self.mode_energies(x, y, potentials) - self.mode_free_energies(x, 1.0, potentials)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """F(x, y): -log P(y | x, z) with z eliminated, by min_z (eliminate=min) or by the soft-min
        at the run's beta, -1/beta log (1/K) sum_z exp(-beta (-log P(y | x, z))): (B,)."""
        return eliminate_modes(self.mode_costs(x, y), self.eliminate, self.beta)


def eliminate_modes(costs: torch.Tensor, eliminate: str, beta: float) -> torch.Tensor:
    """(B, K) per-mode costs -> (B,): the min (hard-EM), or the soft-min at beta with a uniform
    prior over the K modes (soft-EM; beta -> inf gives the min, beta -> 0 the mean)."""
    if eliminate == "min" or math.isinf(beta):
        return costs.min(dim=1).values
    return -(torch.logsumexp(-beta * costs, dim=1) - math.log(costs.shape[1])) / beta
