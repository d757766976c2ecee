"""loss=energy: the energy loss, push the data's energy down and nothing up."""

from typing import Tuple

from ebm_cli.core.loss import Loss, Stats


class EnergyLoss(Loss):
    """The tutorial's energy loss: loss = mean F(x, y).

    It has no contrastive term, so with an energy that can take any shape it is minimised by a
    landscape that is low everywhere. On a non-negative energy (energy=mlp's output under this loss,
    F = MLP^2) that is the flat F = 0: the energy collapses, and the run reports it (Training/energy_range, a
    warning, `collapsed` in metrics.json). On an energy unbounded below (energy.output=linear or square_plus_linear) F
    sinks without bound instead, everywhere. It is here to show that; an architecture that bounds
    its low-energy region should use loss=free_energy instead, which checks that it does.
    """

    name = "energy"

    def __call__(self, energy, x, y, beta: float) -> Tuple[object, Stats]:
        e_pos = energy(x, y)
        return e_pos.mean(), {"e_pos": e_pos.detach().mean()}
