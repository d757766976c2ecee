"""Multi-output prediction by sweeping z: y = g(x, z) for every z node of a decoder energy (and the
one prediction f(x) of a regressor, which has no z: the baseline through the same path)."""

import math

import torch

from ebm_cli.errors import UserError
from ebm_cli.inference.common import Candidates, pairwise_energy, select_distinct


class ZSweepInference:
    """Enumerate (discrete z) or sweep (a grid or seeded samples of continuous z) the decoder's
    predictions g(x, z), score each by the free energy F(x, g(x, z)), keep the k best distinct.

    Scoring by F rather than by E(x, g, z) = R(x, z) counts how much of z's mass agrees on a y,
    and makes these energies comparable with every other inference method's.
    """

    def __init__(self, k: int, dedup: float, min_share: float = 0.0):
        self.k, self.dedup, self.min_share = k, dedup, min_share

    def check(self, energy) -> None:
        if not (hasattr(energy, "decode") or hasattr(energy, "predict")):
            raise UserError("inference=z_sweep needs an energy that decodes its predictions (energy=decoder, "
                            "conv_latent, regressor or conv_regressor); use inference=grid or gradient")

    def __call__(self, energy, x: torch.Tensor, k: int = None) -> Candidates:
        k = k or self.k
        if not hasattr(energy, "decode"):
            return self.predicted(energy, x, k)
        with torch.no_grad():
            z, _ = energy.nodes(x.device)  # (S, *z_shape)
            y = energy.y_space.project(energy.decode(x, z))  # (B, S, *y_shape)
            e = pairwise_energy(energy, x, y)  # (B, S)
            if self.min_share > 0:
                # Gibbs weight relative to the best: exp(-beta (F - F_best)) < min_share -> dropped
                gap = math.log(1 / self.min_share) / energy.beta
                e = torch.where(e - e.min(dim=1, keepdim=True).values > gap, torch.full_like(e, math.inf), e)
            z_all = z.unsqueeze(0).expand(x.shape[0], *z.shape)
            cands = select_distinct(y, e, k, self.dedup, z=z_all)
        cands.evaluations = x.shape[0] * z.shape[0] * (z.shape[0] + 1)
        return cands

    @staticmethod
    def predicted(energy, x: torch.Tensor, k: int) -> Candidates:
        """A regressor's one candidate f(x) per x (the other k - 1 slots masked), at energy 0."""
        with torch.no_grad():
            y = energy.y_space.project(energy.predict(x)).unsqueeze(1)  # (B, 1, *y_shape)
            e = energy(x, y[:, 0])[:, None]
        b = x.shape[0]
        mask = torch.zeros(b, k, dtype=torch.bool, device=x.device)
        mask[:, 0] = True
        return Candidates(y=y.expand(b, k, *y.shape[2:]).clone(), energy=e.expand(b, k).clone(), mask=mask,
                          evaluations=b)
