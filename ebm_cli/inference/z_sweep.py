"""Multi-output prediction by sweeping z: y = g(x, z) for every z node of a decoding energy (and the
one prediction f(x) of a predictor, which has no z: the baseline through the same path)."""

import math
from typing import Optional

import torch

from ebm_cli.core.energy import DecodingEnergy, PredictorEnergy, pairwise_energy
from ebm_cli.core.inference import Candidates, Inference, select_distinct
from ebm_cli.errors import UserError, require, require_non_negative


class ZSweepInference(Inference):
    """Enumerate (discrete z) or sweep (a grid or seeded samples of continuous z) the decoder's
    predictions g(x, z), score each by the free energy F(x, g(x, z)), keep the k best distinct.

    Scoring by F rather than by E(x, g, z) = R(x, z) counts how much of z's mass agrees on a y,
    and makes these energies comparable with every other inference method's.

    Args:
        k: at most this many candidates per x.
        dedup: predictions closer than this (Euclidean) are one candidate.
        min_share: drop a candidate whose Gibbs weight is below this share of the best one's,
            exp(-beta (F - F_best)) < min_share; 0 keeps all k.
        y_space: the data's y box.
    """

    name = "z_sweep"

    def __init__(self, k: int = 3, dedup: float = 0.02, min_share: float = 0.0, y_space=None):
        super().__init__(k, y_space)
        require_non_negative(dedup=dedup)
        require(0 <= min_share < 1, "min_share", min_share, "must be in [0, 1)")
        self.dedup, self.min_share = dedup, min_share

    def check(self, energy) -> None:
        if not isinstance(energy, (DecodingEnergy, PredictorEnergy)):
            raise UserError(f"inference=z_sweep needs an energy that decodes its predictions (a DecodingEnergy such as "
                            f"energy=decoder or conv_latent, or a PredictorEnergy such as energy=regressor), not "
                            f"{type(energy).__name__}; use inference=grid or gradient")
        self.require_box()

    def __call__(self, energy, x: torch.Tensor, k: Optional[int] = None) -> Candidates:
        k = k or self.k
        if isinstance(energy, PredictorEnergy):
            return predicted(energy, x, k, self.y_space)
        with torch.no_grad():
            z, _ = energy.nodes(x.device)  # (S, *z_shape)
            y = self.y_space.project(energy.decode(x, z))  # (B, S, *y_shape)
            e = pairwise_energy(energy, x, y)  # (B, S)
            if self.min_share > 0:
                # Gibbs weight relative to the best: exp(-beta (F - F_best)) < min_share -> dropped
                gap = math.log(1 / self.min_share) / energy.beta
                e = torch.where(e - e.min(dim=1, keepdim=True).values > gap, torch.full_like(e, math.inf), e)
            z_all = z.unsqueeze(0).expand(x.shape[0], *z.shape)
            cands = select_distinct(y, e, k, self.dedup, z=z_all)
        cands.evaluations = x.shape[0] * z.shape[0] * (z.shape[0] + 1)
        return cands


def predicted(energy: PredictorEnergy, x: torch.Tensor, k: int, y_space) -> Candidates:
    """A predictor's one candidate f(x) per x (the other k - 1 slots masked), at its energy (0)."""
    with torch.no_grad():
        y = y_space.project(energy.predict(x)).unsqueeze(1)  # (B, 1, *y_shape)
        e = energy(x, y[:, 0])[:, None]
    b = x.shape[0]
    mask = torch.zeros(b, k, dtype=torch.bool, device=x.device)
    mask[:, 0] = True
    return Candidates(y=y.expand(b, k, *y.shape[2:]).clone(), energy=e.expand(b, k).clone(), mask=mask, evaluations=b)
