"""The losses of the EBM tutorial that compare the data's energy with the most offending incorrect
answer's: the search for that answer, shared by loss=hinge, perceptron, log, lvq2, mce,
square_square and square_exponential (losses/margin.py)."""

from abc import abstractmethod
from typing import Tuple

import torch

from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.loss import Loss, Stats
from ebm_cli.core.spaces import is_continuous
from ebm_cli.errors import UserError, require_non_negative, require_positive


class OffendingAnswerLoss(Loss):
    """loss = mean_i [ Q(E+, E_bar) + mean_r Q(E+, E_r) ], for a per-sample Q given by the subclass.

    E+ = F(x, y) is the data's energy; E_bar = F(x, y_bar) the most offending incorrect answer's,
    y_bar = argmin F(x, .) over the incorrect region. With multi-valued data the other branches at
    x are correct too, so "incorrect" means farther than `exclude` from every training y whose x
    lies within `x_window` of this x. That constrained minimum is either a free minimum of F or lies
    on the region's boundary (y' +- exclude along each axis, for each correct y'), so both are
    searched: the boundary points (for a y of up to 32 numbers), and `proposals` points spread over the y box (one in each cell of
    an even partition, at a random offset every step, as loss=nll's y-grid), so that over the steps
    no low region escapes the search. The E_r are the energies of `uniform` uniform incorrect y:
    without them a flat energy is a fixed point (the most offending y sits right next to the data)
    and training from scratch stalls; uniform=0 gives the tutorial's loss on y_bar alone.

    Args (every subclass takes these, after its own):
        exclude: incorrect = farther than this from every correct y of this x.
        x_window: the training y with x' within this of x are x's correct answers (a 1-D x).
        proposals: points of the y box searched for free minima each step (cells per axis:
            proposals ** (1 / D) for a D-dimensional y; uniform points where 2 ** D cells would be
            more than 4 * proposals).
        uniform: uniform incorrect answers per sample, each also scored by Q.
        data: the dataset (its training rows give each x's correct answers).
        y_space: the data's y box.
        device: where the training rows live.
    """

    MAX_NEIGHBOURS = 48  # training rows per x taken as its correct answers
    MAX_BOUNDARY_DIMS = 32

    def __init__(self, exclude: float = 0.1, x_window: float = 0.02, proposals: int = 64, uniform: int = 16, *, data,
                 y_space, device="cpu"):
        require_positive(exclude=exclude, proposals=proposals)
        require_non_negative(x_window=x_window, uniform=uniform)
        if not is_continuous(y_space):
            raise UserError(f"loss={self.name} needs a continuous y (its incorrect answers are the y farther than "
                            "exclude from every correct one); token sequences train with loss=nll")
        if tuple(data.x_train.shape[1:]) != (1,):
            raise UserError(f"loss={self.name} finds each x's correct answers within x_window of a 1-D x; this "
                            f"data's x has shape {tuple(data.x_train.shape[1:])}: use loss=nll or loss=free_energy")
        self.exclude, self.x_window, self.uniform, self.y_space = exclude, x_window, uniform, y_space
        self.proposals = proposals
        self.cells = max(2, round(proposals ** (1 / y_space.size)))  # per axis
        # An even partition needs 2**D cells at least: past a few dimensions, uniform points instead.
        self.stratify = self.cells ** y_space.size <= 4 * proposals
        # The boundary points are 2 D per correct answer: searched for a y of up to MAX_BOUNDARY_DIMS.
        self.boundary = y_space.size <= self.MAX_BOUNDARY_DIMS
        order = torch.argsort(data.x_train[:, 0])
        self.x_sorted = data.x_train[order, 0].contiguous().to(device)
        self.y_sorted = data.y_train[order].to(device)

    @abstractmethod
    def pair(self, e_pos: torch.Tensor, e_neg: torch.Tensor) -> torch.Tensor:
        """Q(E+, E-) elementwise (E+ broadcast against E-): the loss of one (correct, incorrect) pair."""

    def correct_answers(self, x: torch.Tensor):
        """Training y with x' within x_window of x: (B, W, *y_shape) and a mask (B, W)."""
        lo = torch.searchsorted(self.x_sorted, x[:, 0] - self.x_window)
        hi = torch.searchsorted(self.x_sorted, x[:, 0] + self.x_window, right=True)
        # Spread W picks evenly over each window so that every branch in it is represented.
        frac = torch.linspace(0, 1, self.MAX_NEIGHBOURS, device=x.device)
        idx = lo[:, None] + (frac[None] * (hi - lo - 1).clamp(min=0)[:, None]).round().long()
        idx = idx.clamp(max=len(self.x_sorted) - 1)
        return self.y_sorted[idx], (hi > lo)[:, None].expand(-1, self.MAX_NEIGHBOURS)

    def incorrect(self, points, answers, answer_mask) -> torch.Tensor:
        """(B, P) True where a point (B, P, *y_shape) is farther than `exclude` from every answer."""
        dist = torch.cdist(points.flatten(2), answers.flatten(2))  # (B, P, W)
        return ~((dist < self.exclude) & answer_mask[:, None, :]).any(dim=2)

    def negatives(self, energy, x, y):
        """The most offending incorrect y_bar (B, *y_shape), `uniform` uniform y (B, R, *y_shape) and
        which of those are incorrect (B, R)."""
        space, b = self.y_space, len(y)
        with torch.no_grad():
            answers, answer_mask = self.correct_answers(x)
            answers = torch.cat([y.unsqueeze(1), answers], dim=1)  # the sample's own y is correct
            answer_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=y.device), answer_mask], 1)
            if self.stratify:
                proposals, _ = space.stratified(b, self.cells, device=y.device)  # (B, cells**D, *y_shape)
            else:
                proposals = space.sample(b, self.proposals, device=y.device)  # (B, proposals, *y_shape)
            usable = torch.ones(proposals.shape[:2], dtype=torch.bool, device=y.device)
            pool = proposals
            if self.boundary:
                flat = answers.flatten(2)  # (B, W, D)
                steps = self.exclude * (1 + 1e-3) * torch.eye(flat.shape[2], device=y.device)
                boundary = torch.cat([flat[:, :, None] + steps, flat[:, :, None] - steps], dim=2).flatten(1, 2)
                boundary = space.project(boundary).view(b, -1, *space.shape)
                pool = torch.cat([proposals, boundary], dim=1)  # (B, P, *y_shape)
                usable = torch.cat([usable, answer_mask.repeat_interleave(2 * flat.shape[2], dim=1)], dim=1)
            usable &= self.incorrect(pool, answers, answer_mask)
            e = pairwise_energy(energy, x, pool)
            e = torch.where(usable, e, torch.full_like(e, float("inf")))
            y_bar = pool[torch.arange(b, device=y.device), e.argmin(dim=1)]
            uniform = space.sample(b, self.uniform, device=y.device)
            uniform_ok = self.incorrect(uniform, answers, answer_mask)
        return y_bar, uniform, uniform_ok

    def __call__(self, energy, x, y, beta: float) -> Tuple[torch.Tensor, Stats]:
        y_bar, uniform, uniform_ok = self.negatives(energy, x, y)
        e_pos = energy(x, y)
        e_bar = energy(x, y_bar)
        loss = self.pair(e_pos, e_bar)
        stats = {"e_pos": e_pos.detach().mean(), "e_neg": e_bar.detach().mean()}
        if self.uniform:
            e_uni = pairwise_energy(energy, x, uniform)  # (B, R)
            per = self.pair(e_pos[:, None], e_uni) * uniform_ok
            loss = loss + per.sum(1) / uniform_ok.sum(1).clamp(min=1)
            stats["e_uniform"] = e_uni.detach().mean()
        return loss.mean(), stats
