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

    eliminate: how z leaves the sequence-level free energy, `min` (beta = inf, hard-EM style) or
    `softmin` (the run's finite beta, soft-EM style); the trainer sets beta every step.
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

    def mode_costs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How well each mode explains y, comparable across modes: (B, K). For eliminate=min, where
        each mode is a chain normalised on its own, -1/beta log P_beta(y | x, z) = E - F_beta(x, z);
        for softmin, where the modes share one partition function, E itself."""
        potentials = self.flat_potentials(x)
        e = self.mode_energies(x, y, potentials)
        return e - self.mode_free_energies(x, self.beta, potentials) if self.eliminate == "min" else e

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """F(x, y) with z eliminated: min_z E (eliminate=min) or the soft-min at beta: (B,)."""
        e = self.mode_energies(x, y)
        if self.eliminate == "min":
            return e.min(dim=1).values
        return -torch.logsumexp(-self.beta * e, dim=1) / self.beta
