"""loss=cd: contrastive divergence with Langevin (or HMC) negatives from a persistent replay buffer."""

from typing import Dict, Optional, Tuple

import torch

from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.loss import Loss, Stats
from ebm_cli.core.spaces import is_continuous
from ebm_cli.errors import (UserError, require, require_choice, require_non_negative, require_positive,
                            require_positive_or_none)
from ebm_cli.inference.hmc import hmc_chains
from ebm_cli.inference.langevin import langevin_chains


class ContrastiveDivergence(Loss):
    """Contrastive divergence with sampled negatives and a persistent replay buffer:

        loss = mean F(x, y+) - mean F(x, y-) + alpha (F(x, y+)^2 + F(x, y-)^2)

    y- comes from `steps` Langevin steps (or HMC transitions) at the run's beta, started from y values kept in a
    buffer of `buffer_size` earlier negatives (a share `reinit` of the chains restarts from
    uniform y, so new regions keep being explored); the finished chains go back into the buffer.
    The alpha term keeps the energies near zero so that they cannot drift off together. The
    buffer is part of the checkpoint, so a resumed run continues the same chains. With
    sampler=hmc, each of the `steps` is an HMC transition (`leapfrog` leapfrog steps of
    `leapfrog_step`, then a Metropolis test), and the acceptance rate is logged (Training/acceptance).

    Args:
        steps: Langevin steps (or HMC transitions) per training step.
        step_size: the Langevin step eta.
        grad_clip: max norm of grad_y F per chain (Langevin); null = none.
        buffer_size: persistent chains.
        reinit: share of chains restarted from uniform y each step, in [0, 1].
        alpha: weight of the energy magnitude penalty F+^2 + F-^2.
        sampler: langevin | hmc.
        leapfrog: HMC's leapfrog steps per transition.
        leapfrog_step: HMC's leapfrog step at beta = 1 (leapfrog_step / sqrt(beta) at beta, jittered by
            a factor in [0.5, 1.5]: see hmc_chains).
        y_space: the data's y box.
        device: where the buffer lives.
    """

    name = "cd"

    def __init__(self, steps: int = 15, step_size: float = 2e-3, grad_clip: Optional[float] = 100.0,
                 buffer_size: int = 4096, reinit: float = 0.05, alpha: float = 0.1, sampler: str = "langevin",
                 leapfrog: int = 3, leapfrog_step: float = 0.03, *, y_space, device="cpu"):
        require_positive(steps=steps, step_size=step_size, buffer_size=buffer_size, leapfrog=leapfrog,
                         leapfrog_step=leapfrog_step)
        require_choice("sampler", sampler, ("langevin", "hmc"))
        require_positive_or_none(grad_clip=grad_clip)
        require(0 <= reinit <= 1, "reinit", reinit, "must be in [0, 1]")
        require_non_negative(alpha=alpha)
        if not is_continuous(y_space):
            raise UserError(f"loss=cd samples negatives by {sampler} on a continuous y; token sequences train "
                            "with loss=nll")
        self.steps, self.step_size, self.grad_clip = steps, step_size, grad_clip
        self.reinit, self.alpha, self.space = reinit, alpha, y_space
        self.sampler, self.leapfrog, self.leapfrog_step = sampler, leapfrog, leapfrog_step
        self.acceptance = None  # the last HMC step's acceptance rate
        self.buffer = y_space.sample(buffer_size, device=device)  # (N, *y_shape)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"buffer": self.buffer}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.buffer = state["buffer"].to(self.buffer.device)

    def negatives(self, energy, x: torch.Tensor, beta: float) -> torch.Tensor:
        """(B, 1, *y_shape) Langevin samples, started from the buffer (or uniform)."""
        b, space = x.shape[0], self.space
        idx = torch.randint(0, len(self.buffer), (b,), device=x.device)
        start = self.buffer[idx]
        fresh = torch.rand(b, device=x.device) < self.reinit
        uniform = space.sample(b, device=x.device)
        start = torch.where(fresh.view(b, *([1] * (start.dim() - 1))), uniform, start)
        if self.sampler == "hmc":
            y_neg, self.acceptance = hmc_chains(energy, x, start.unsqueeze(1), space, self.steps, self.leapfrog_step,
                                                self.leapfrog, lambda t: beta)
        else:
            y_neg = langevin_chains(energy, x, start.unsqueeze(1), space, self.steps, self.step_size, lambda t: beta,
                                    self.grad_clip)
        self.buffer[idx] = y_neg[:, 0]
        return y_neg

    def __call__(self, energy, x, y, beta: float) -> Tuple[torch.Tensor, Stats]:
        y_neg = self.negatives(energy, x, beta)
        e_pos = energy(x, y)
        e_neg = pairwise_energy(energy, x, y_neg)[:, 0]
        loss = e_pos.mean() - e_neg.mean() + self.alpha * (e_pos.pow(2) + e_neg.pow(2)).mean()
        stats = {"e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean()}
        if self.sampler == "hmc":
            stats["acceptance"] = self.acceptance
        return loss, stats
