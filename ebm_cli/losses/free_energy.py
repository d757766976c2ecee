"""loss=free_energy: push the data's free energy down, with no negative phase."""

from typing import Tuple

import torch

from ebm_cli.core.energy import BoundedLowEnergy
from ebm_cli.core.loss import Loss, Stats
from ebm_cli.errors import UserError


class FreeEnergyLoss(Loss):
    """loss = mean F_beta(x, y_data): pull the data's free energy down, with no negative phase.

    Only sound for an energy whose architecture bounds the low-energy region (a decoder with few z
    values or a small, regularised z; a regressor): nothing else keeps the energy from sinking
    everywhere. Annealing beta from small to large moves the soft-min over z towards the min: at
    small beta every z shares every point (the decoders stay together), and as beta grows they
    split the data between them (deterministic annealing).
    """

    name = "free_energy"

    def check(self, energy) -> None:
        if not (isinstance(energy, BoundedLowEnergy) and energy.bounds_low_energy):
            raise UserError(f"loss=free_energy has no negative phase, so only an energy whose architecture bounds its "
                            f"low-energy region can use it (energy=decoder or conv_latent with energy.prior=none or "
                            f"l2, or a regressor), not {type(energy).__name__} with these settings; "
                            "use loss=nll or loss=hinge")

    def __call__(self, energy, x, y, beta: float) -> Tuple[torch.Tensor, Stats]:
        e_pos = energy(x, y)
        return e_pos.mean(), {"e_pos": e_pos.detach().mean()}
