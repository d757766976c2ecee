"""inference=dp: exact argmin and the k best sequences of a chain-structured energy (Viterbi)."""

import math
from typing import Optional, Tuple

import torch

from ebm_cli.core.energy import ChainEnergy
from ebm_cli.core.inference import Candidates, Inference, select_distinct
from ebm_cli.core.spaces import SequenceSpace
from ebm_cli.dynamic_programming import forward_free_energy, kbest_viterbi, viterbi
from ebm_cli.errors import UserError, require

MIN_SPLIT_PROB = 0.05  # at most 1 / split_prob sequences per mode are searched: 20


class DPInference(Inference):
    """Viterbi (min-sum) per latent mode z of a ChainEnergy, ranked by -log P(y | x, z) =
    E(x, y, z) + log Z(x, z) (the forward algorithm gives log Z, so the modes are comparable); the k
    best distinct sequences are kept.

    Each mode offers its best sequence, and where that holds at most 1 - split_prob of the mode's
    probability, its runner-ups that hold at least split_prob: a mode can settle between two valid
    outputs (P = 0.5 each) that no other mode produces, and its argmax alone would lose one of them.
    A well-trained mode puts almost all of its probability on one sequence; then only its argmax is
    searched. With a sequence space that knows its end symbols, sequences are read up to their end
    ("w1 w2 <eos>" and "w1 w2 <pad>" are one sentence): paths of one mode that read alike are one
    candidate with their summed probability.

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
        chain has fewer, the paths (N, R, T) read up to their end, and how many chain sequences were
        searched. u: (N, T, S), p: (N, S, S)."""
        energy, best = viterbi(u, p)  # (N,), (N, T)
        log_z = forward_free_energy(u, p, 1.0)  # (N,)
        nll, paths = (energy - log_z).unsqueeze(1), self.readable(best).unsqueeze(1)
        per_mode = int(1 / self.split_prob + 1e-9)  # at most this many sequences hold split_prob each
        # room for a runner-up holding split_prob only where the best holds at most 1 - split_prob
        split = nll[:, 0] >= -math.log1p(-self.split_prob) if per_mode > 1 else torch.zeros_like(nll[:, 0], dtype=torch.bool)
        rows = split.nonzero().squeeze(1)
        if len(rows) == 0:
            return nll, paths, len(u)
        e_r, paths_r = kbest_viterbi(u[rows], p[rows], per_mode)  # (M, R), (M, R, T), ascending
        paths_r = self.readable(paths_r)
        nll_r = merge_alike(e_r - log_z[rows].unsqueeze(1), paths_r)
        runner_up = torch.arange(per_mode, device=u.device) > 0
        nll_r = nll_r.masked_fill(runner_up & (nll_r > -math.log(self.split_prob)), math.inf)
        nll = torch.cat([nll, nll.new_full((len(u), per_mode - 1), math.inf)], dim=1).index_copy(0, rows, nll_r)
        paths = paths.expand(-1, per_mode, -1).index_copy(0, rows, paths_r)
        return nll, paths, len(u) + len(rows) * per_mode

    def readable(self, paths: torch.Tensor) -> torch.Tensor:
        """Paths as the sequences they read (up to their end symbol), where the y space knows it."""
        return self.y_space.canonical(paths) if isinstance(self.y_space, SequenceSpace) else paths


def merge_alike(nll: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
    """Sequences of one chain that are the same (once read up to their end) are one: the first of
    them gets their summed probability, the others +inf. nll (N, R) -log P, paths (N, R, T)."""
    same = (paths.unsqueeze(2) == paths.unsqueeze(1)).all(-1)  # (N, R, R)
    summed = torch.logsumexp((-nll).unsqueeze(1).masked_fill(~same, -math.inf), dim=2)  # (N, R): log sum of P
    first = ~torch.tril(same, diagonal=-1).any(2)  # no earlier copy
    return (-summed).masked_fill(~first, math.inf)
