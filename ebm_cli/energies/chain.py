"""The built-in chain energy over target sequences, with K latent modes z:

    E(x, y, z) = sum_t u(x, z)[t, y_t] + sum_{t>1} p(z)[y_{t-1}, y_t]

over the T padded target positions (an end-of-sentence symbol, then padding). u comes from a
bidirectional GRU over the source and one attention query per (position t, mode z); p is a learned
S x S transition table per mode. Inference and the exact NLL come from ChainEnergy (dynamic
programming over the chain).
"""

import math
from typing import List, Optional, Tuple

import torch
from torch import nn

from ebm_cli.core.energy import ChainEnergy
from ebm_cli.core.spaces import DiscreteZ
from ebm_cli.errors import require, require_positive
from ebm_cli.free_energy import FreeEnergy


class AttentionChainEnergy(ChainEnergy):
    """x: (B, Ls) source ids (0 pads); y: (B, T) target ids; z in {0, ..., K-1}.

    Args:
        hidden: width of the embeddings, the GRU and the emission network.
        dropout: dropout on the source's embeddings and the attended context, in training (a
            regulariser for small corpora; 0 = off).
        z: the modes (energy.z.k of them).
        free_energy: how z leaves -log P(y | x, z) (energy.free_energy.eliminate=softmin|min).
        src_vocab, tgt_vocab: the source and target words (from the data).
        length: T, the padded target length (from the data).
    """

    def __init__(self, hidden: int = 64, dropout: float = 0.0, z: Optional[DiscreteZ] = None,
                 free_energy: Optional[FreeEnergy] = None, *, src_vocab: List[str], tgt_vocab: List[str], length: int):
        super().__init__(z if z is not None else DiscreteZ(4), free_energy)
        require_positive(hidden=hidden)
        require(0 <= dropout < 1, "dropout", dropout, "must be in [0, 1)")
        self.drop = nn.Dropout(dropout)
        self.length, self.states = length, len(tgt_vocab)
        self.embed = nn.Embedding(len(src_vocab), hidden, padding_idx=0)
        self.encoder = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.key = nn.Linear(2 * hidden, hidden)
        self.positions = nn.Parameter(0.5 * torch.randn(length, hidden))
        self.modes = nn.Parameter(0.5 * torch.randn(self.k, hidden))
        self.emit = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, self.states))
        self.transitions = nn.Parameter(torch.zeros(self.k, self.states, self.states))

    def potentials(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """u: (B, K, T, S) unary energies per mode; p: (K, S, S) transition energies [previous, next]."""
        h, _ = self.encoder(self.drop(self.embed(x)))  # (B, Ls, 2H)
        q = self.positions.unsqueeze(0) + self.modes.unsqueeze(1)  # (K, T, H)
        scores = torch.einsum("kth,blh->bktl", q, self.key(h)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill((x == 0)[:, None, None, :], float("-inf"))
        context = self.drop(torch.einsum("bktl,blh->bkth", scores.softmax(-1), h))  # (B, K, T, 2H)
        u = -self.emit(torch.cat([context, q.unsqueeze(0).expand(x.shape[0], *q.shape)], dim=-1))
        return u, self.transitions
