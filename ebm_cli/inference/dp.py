"""inference=dp: exact argmin and the k best sequences of a chain-structured energy (Viterbi)."""

import math
from typing import Optional

import torch

from ebm_cli.core.energy import ChainEnergy
from ebm_cli.core.inference import Candidates, Inference, select_distinct
from ebm_cli.dynamic_programming import forward_free_energy, viterbi
from ebm_cli.errors import UserError, require


class DPInference(Inference):
    """Viterbi (min-sum) per latent mode z of a ChainEnergy: K translations, of which the k best
    distinct ones are kept, ranked by -log P(y | x, z) = E(x, y, z) + log Z(x, z) (the forward
    algorithm gives log Z, so the modes are comparable).

    Args:
        k: candidates per x.
        min_share: drop a mode's sequence whose P(y | x, z) is below this share of the best one's;
            0 keeps every mode's.
        y_space: the data's y space (token sequences).
    """

    name = "dp"

    def __init__(self, k: int = 3, min_share: float = 0.0, y_space=None):
        super().__init__(k, y_space)
        require(0 <= min_share < 1, "min_share", min_share, "must be in [0, 1)")
        self.min_share = min_share

    def check(self, energy) -> None:
        if not isinstance(energy, ChainEnergy):
            raise UserError(f"inference=dp needs a chain-structured energy over discrete sequences (a sum of unary "
                            f"and pairwise terms, a ChainEnergy); {type(energy).__name__} is not one: "
                            "use inference=grid or gradient")

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k = k or self.k
        with torch.no_grad():
            u, p = energy.flat_potentials(x)  # (B*K, T, S), (B*K, S, S)
            e, paths = viterbi(u, p)
            b, modes = x.shape[0], energy.k
            e, paths = e.view(b, modes), paths.view(b, modes, -1)
            # -log P(y | x, z), comparable across modes (each normalised alone; a uniform prior)
            e = e - forward_free_energy(u, p, 1.0).view(b, modes)
            if self.min_share > 0:  # P(y_z | x, z) below min_share of the best candidate's: dropped
                e = torch.where(e - e.min(dim=1, keepdim=True).values > math.log(1 / self.min_share),
                                torch.full_like(e, math.inf), e)
            # the k best distinct sequences (identical ones across modes count once), with their z
            z = torch.arange(modes, device=x.device, dtype=u.dtype).view(1, modes, 1).expand(b, modes, 1)
            cands = select_distinct(paths, e, k, 0.5, z=z)
        steps, s = u.shape[1:]
        cands.evaluations = b * modes * steps * s * s
        return cands
