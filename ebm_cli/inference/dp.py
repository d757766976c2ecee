"""inference=dp: exact argmin and the k best sequences of a chain-structured energy (Viterbi)."""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ebm_cli.core.energy import ChainEnergy
from ebm_cli.core.inference import Candidates, Inference, select_distinct
from ebm_cli.core.spaces import SequenceSpace
from ebm_cli.dynamic_programming import forward_free_energy, kbest_viterbi, viterbi
from ebm_cli.errors import UserError, require

MIN_SPLIT_PROB = 0.05  # at most 1 / split_prob sentences per mode: 20
SEARCH_PER_SENTENCE = 2  # paths searched per sentence a split mode may offer (ended by <eos>, by <pad>)
SLACK = 1e-4  # a probability at the threshold, give or take float rounding, counts as reaching it
RULED_OUT = 1e4  # the energy that rules a token out where a sequence is clamped: exp(-1e4) = 0
PATH_IS_SENTENCE = 0.01  # a best path holding P >= exp(-0.01) scores its sentence to within 0.01


class DPInference(Inference):
    """Viterbi (min-sum) per latent mode z of a ChainEnergy, ranked by -log P(y | x, z) =
    E(x, y, z) + log Z(x, z) (the forward algorithm gives log Z, so the modes are comparable); the k
    best distinct sequences are kept.

    Each mode offers its best sequence, and where that holds at most 1 - split_prob of the mode's
    probability, its runner-ups that hold at least split_prob (a list Viterbi over the mode's chain
    with an ended path kept ended, two paths per sentence): a mode can settle between two valid
    outputs (P = 0.5 each) that no other mode produces, and its argmax alone would lose one of them. A well-trained
    mode puts almost all of its probability on one sequence; then only its argmax is searched. With
    a sequence space that knows its end symbols, sequences are read up to their end ("w1 w2 <eos>"
    and "w1 w2 <pad>" are one sentence), and each is scored by the probability of the sentence:
    every path that reads as it, summed exactly (the forward algorithm on the chain clamped to it;
    a best path that holds 99 % of its mode scores its sentence to within 0.01 by itself).

    Args:
        k: candidates per x.
        min_share: drop a sequence whose P(y | x, z) is below this share of the best candidate's;
            0 keeps every mode's.
        split_prob: a mode's runner-ups with P(y | x, z) at least this are candidates too; 1 keeps
            only each mode's argmax.
        y_space: the data's y space (token sequences).
    """

    name = "dp"
    score = "-log P(y | x, z)"

    def __init__(self, k: int = 3, min_share: float = 0.0, split_prob: float = 0.25, y_space=None):
        super().__init__(k, y_space)
        require(0 <= min_share < 1, "min_share", min_share, "must be in [0, 1)")
        require(MIN_SPLIT_PROB <= split_prob <= 1, "split_prob", split_prob,
                f"must be in [{MIN_SPLIT_PROB}, 1] (a mode's runner-ups holding at least this share of its probability)")
        self.min_share, self.split_prob = min_share, split_prob

    def check(self, energy) -> None:
        if not isinstance(energy, ChainEnergy):
            raise UserError(f"inference=dp needs a chain-structured energy over discrete sequences (a sum of unary "
                            f"and pairwise terms, a ChainEnergy); {type(energy).__name__} is not one: "
                            "use inference=grid or gradient")

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k = k or self.k
        with torch.no_grad():
            u, p = energy.flat_potentials(x)  # (B*K, T, S), (B*K, S, S)
            nll, paths, searched = self.mode_sequences(u, p)  # (B*K, R), (B*K, R, T)
            b, modes, per_mode = x.shape[0], energy.k, nll.shape[1]
            nll, paths = nll.reshape(b, modes * per_mode), paths.reshape(b, modes * per_mode, -1)
            if self.min_share > 0:  # P(y | x, z) below min_share of the best candidate's: dropped
                nll = nll.masked_fill(nll - nll.min(dim=1, keepdim=True).values > math.log(1 / self.min_share), math.inf)
            # the k best distinct sequences (identical ones across modes count once), with their z
            z = torch.arange(modes, device=x.device, dtype=u.dtype).repeat_interleave(per_mode)  # mode of each column
            cands = select_distinct(paths, nll, k, 0.5, z=z.view(1, -1, 1).expand(b, -1, 1))
        steps, s = u.shape[1:]
        cands.evaluations = searched * steps * s * s
        return cands

    def mode_sequences(self, u: torch.Tensor, p: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """Each chain's candidate sequences, best first: -log P(y | x, z) (N, R) with +inf where a
        chain has fewer, the sequences (N, R, T) as they read, and how many chain sequences were
        searched. u: (N, T, S), p: (N, S, S)."""
        energy, best = viterbi(u, p)  # (N,), (N, T)
        free = forward_free_energy(u, p, 1.0)  # -log Z: (N,)
        paths = self.readable(best).unsqueeze(1)  # (N, 1, T)
        nll = (energy - free).unsqueeze(1)  # the path's -log P: (N, 1)
        # its sentence holds at least that, and at most all of it: summed exactly where that differs
        unsure = (nll[:, 0] > PATH_IS_SENTENCE).nonzero().squeeze(1) if self.reads_sentences else nll.new_zeros(0).long()
        if len(unsure):
            nll = nll.index_copy(0, unsure, self.sentence_nll(u[unsure], p[unsure], paths[unsure], free[unsure]))
        per_mode = int(1 / self.split_prob + SLACK)  # at most this many sentences hold split_prob each
        # room for a runner-up holding split_prob only where the best holds at most 1 - split_prob
        split = (nll[:, 0] >= -math.log1p(-self.split_prob) - SLACK if per_mode > 1
                 else torch.zeros_like(nll[:, 0], dtype=torch.bool))
        rows = split.nonzero().squeeze(1)
        if len(rows) == 0:
            return nll, paths, len(u)
        # searched on the chain where an ended path stays ended: a sentence is one or two of its paths
        searched = SEARCH_PER_SENTENCE * per_mode
        e_r, paths_r = kbest_viterbi(u[rows], self.ended_stays_ended(p[rows]), searched)  # (M, searched), (M, searched, T)
        paths_r = self.readable(paths_r)
        same = (paths_r.unsqueeze(2) == paths_r.unsqueeze(1)).all(-1)  # (M, searched, searched)
        first = torch.isfinite(e_r) & ~torch.tril(same, diagonal=-1).any(2)  # each sentence once
        nll_r = self.sentence_nll(u[rows], p[rows], paths_r, free[rows]).masked_fill(~first, math.inf)
        runner_up = torch.arange(searched, device=u.device) > 0
        nll_r = nll_r.masked_fill(runner_up & (nll_r > -math.log(self.split_prob) + SLACK), math.inf)
        nll_r, order = nll_r.topk(per_mode, dim=1, largest=False)  # (M, R): the kept ones first
        paths_r = paths_r.gather(1, order.unsqueeze(2).expand(-1, -1, paths_r.shape[2]))
        nll = torch.cat([nll, nll.new_full((len(u), per_mode - 1), math.inf)], dim=1).index_copy(0, rows, nll_r)
        paths = paths.expand(-1, per_mode, -1).index_copy(0, rows, paths_r)
        return nll, paths, len(u) + len(rows) * searched

    def ended_stays_ended(self, p: torch.Tensor) -> torch.Tensor:
        """Transitions (..., S, S) where a path, once ended (<eos> or <pad>), goes on with <pad> only
        (<eos>, without a pad symbol): its paths are the sentences, each ended by <eos> or by <pad>,
        instead of every continuation of each. The same p where sequences are not sentences."""
        if not self.reads_sentences:
            return p
        end_ids, states = self.y_space.end_ids, p.shape[-1]
        ends = torch.zeros(states, dtype=torch.bool, device=p.device)
        ends[list(end_ids)] = True
        onward = torch.ones(states, dtype=torch.bool, device=p.device)
        onward[end_ids[-1]] = False  # after an end, the filler only
        return p.masked_fill(ends.unsqueeze(1) & onward.unsqueeze(0), RULED_OUT)

    def readable(self, paths: torch.Tensor) -> torch.Tensor:
        """Paths as the sequences they read (up to their end symbol), where the y space knows it."""
        return self.y_space.canonical(paths) if self.reads_sentences else paths

    @property
    def reads_sentences(self) -> bool:
        return isinstance(self.y_space, SequenceSpace) and self.y_space.eos is not None

    def sentence_nll(self, u: torch.Tensor, p: torch.Tensor, y: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        """-log P(y | x, z) of sequences y (N, R, T) of chains u (N, T, S), p (N, S, S) with -log Z
        `free` (N,): summed over every path that reads as y (its words, then <eos> or <pad>, then
        anything), by the forward algorithm on the chain with every other path ruled out."""
        n, r, steps = y.shape
        allowed = F.one_hot(y, u.shape[2]).bool()  # (N, R, T, S): the sequence itself
        if self.reads_sentences:
            first, after = self.y_space.ends(y)
            ends = torch.zeros(u.shape[2], dtype=torch.bool, device=u.device)
            ends[list(self.y_space.end_ids)] = True
            allowed = torch.where(first.unsqueeze(-1), ends, allowed)  # <eos> or <pad> where it ends
            allowed = allowed | after.unsqueeze(-1)  # anything after
        clamped = u.unsqueeze(1).masked_fill(~allowed, RULED_OUT).reshape(n * r, steps, -1)
        p_r = p.unsqueeze(1).expand(n, r, *p.shape[1:]).reshape(n * r, *p.shape[1:])
        return forward_free_energy(clamped, p_r, 1.0).view(n, r) - free.unsqueeze(1)
