"""loss=dsm and loss=ssm: score matching, which fits grad_y of the energy and never needs log Z.

The model's score is s(x, y) = grad_y log P_beta(y | x) = -beta grad_y F(x, y). Matching it to the
data's score leaves F free up to a constant per x, which P_beta(y | x) does not see. Both losses
differentiate through grad_y F (a second backward pass), so they take a continuous y.
"""

from typing import Tuple

import torch

from ebm_cli.core.loss import Loss, Stats
from ebm_cli.core.spaces import is_continuous
from ebm_cli.errors import UserError, require_choice, require_non_negative, require_positive


def _require_continuous(name: str, y_space) -> None:
    if not is_continuous(y_space):
        raise UserError(f"loss={name} matches grad_y of the energy, which a token sequence does not have: "
                        "use loss=nll")


def _energy_and_score(energy, x: torch.Tensor, y: torch.Tensor, beta: float):
    """F(x, y): (B,) and the score s = -beta grad_y F: (B, *y_shape), with a graph through both."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        f = energy(x, y)
        (grad,) = torch.autograd.grad(f.sum(), y, create_graph=True)
    return f, -beta * grad, y


class DenoisingScoreMatching(Loss):
    """Denoising score matching (Vincent, 2011): the score of the data blurred by N(0, sigma^2),

        y~ = y + sigma eps,  eps ~ N(0, I),
        loss = 1/2 mean || sigma s(x, y~) + eps ||^2,   s = -beta grad_y F,

    i.e. the score at y~ should point back to y: s(x, y~) = -(y~ - y) / sigma^2, weighted by sigma^2.
    A small sigma fits sharp wells (and needs more steps); a large one smooths the landscape.

    Args:
        sigma: the noise scale, in y's units.
        y_space: the data's y space.
    """

    name = "dsm"
    needs_double_backward = True

    def __init__(self, sigma: float = 0.05, *, y_space):
        require_positive(sigma=sigma)
        _require_continuous(self.name, y_space)
        self.sigma = sigma

    def __call__(self, energy, x, y, beta: float) -> Tuple[torch.Tensor, Stats]:
        eps = torch.randn_like(y)
        f, score, _ = _energy_and_score(energy, x, y + self.sigma * eps, beta)
        loss = 0.5 * (self.sigma * score + eps).flatten(1).pow(2).sum(1).mean()
        return loss, {"e_pos": f.detach().mean()}


class SlicedScoreMatching(Loss):
    """Sliced score matching (Song, Garg, Shi, Ermon, 2019): Hyvärinen's score matching with the
    Jacobian trace replaced by random projections v,

        loss = mean_v [ v^T (d s / d y) v + 1/2 (v^T s)^2 ],   s = -beta grad_y F(x, y),

    with `projections` Rademacher (or Gaussian) v per sample. Optionally on the data blurred by
    N(0, noise^2), which keeps the wells from growing infinitely sharp on data without noise.

    Args:
        projections: random directions v per sample.
        distribution: rademacher | gaussian, of the v.
        noise: the std of the Gaussian blur of y (0 = none).
        y_space: the data's y space.
    """

    name = "ssm"
    needs_double_backward = True

    def __init__(self, projections: int = 1, distribution: str = "rademacher", noise: float = 0.0, *, y_space):
        require_positive(projections=projections)
        require_choice("distribution", distribution, ("rademacher", "gaussian"))
        require_non_negative(noise=noise)
        _require_continuous(self.name, y_space)
        self.projections, self.distribution, self.noise = projections, distribution, noise

    def __call__(self, energy, x, y, beta: float) -> Tuple[torch.Tensor, Stats]:
        if self.noise:
            y = y + self.noise * torch.randn_like(y)
        f, score, y_leaf = _energy_and_score(energy, x, y, beta)
        score = score.flatten(1)  # (B, D)
        total = torch.zeros((), device=y.device)
        for _ in range(self.projections):
            v = torch.randn_like(score)
            if self.distribution == "rademacher":
                v = v.sign()
            vs = (v * score).sum(1)  # (B,) v^T s
            (grad_vs,) = torch.autograd.grad(vs.sum(), y_leaf, create_graph=True)
            total = total + ((grad_vs.flatten(1) * v).sum(1) + 0.5 * vs.pow(2)).mean()
        return total / self.projections, {"e_pos": f.detach().mean()}
