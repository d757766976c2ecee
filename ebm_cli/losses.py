"""Training objectives: (energy, x, y, beta) -> (loss, figures to log)."""

import math
from typing import Dict, Tuple

import torch

from ebm_cli.energies.chain import eliminate_modes

from ebm_cli.inference.common import pairwise_energy
from ebm_cli.inference.langevin import langevin_chains

Stats = Dict[str, torch.Tensor]


class GibbsNLL:
    """-log P(y|x) with P(y|x) = exp(-beta F(x, y)) / Z(x), Z by quadrature on a y-grid.

    loss = beta F(x, y) + log sum_g exp(-beta F(x, y_g)) + log(cell volume), or the exact log Z(x)
    where the energy provides `log_partition(x, beta)` (the regressor does). The grid has one
    point per cell of an even partition of the y-box, placed at a random position inside its
    cell at every step (stratified sampling): Z is then estimated without bias, so the energy
    cannot hide low values between fixed grid points, and a coarse grid is enough.
    e_neg is the model's expected energy E_P[F] over the grid, the "negative phase".
    """

    def __init__(self, grid_points: int, stratified: bool = True):
        self.grid_points, self.stratified = grid_points, stratified

    def log_partition(self, energy, x: torch.Tensor, beta: float):
        """log Z(x): (B,), and F on the grid: (B, G**D)."""
        space, b, n = energy.y_space, x.shape[0], self.grid_points
        cell = (space.high - space.low) / n
        corners = space.grid(n + 1, device=x.device)  # (n+1)**D points; keep lower corners only
        lower = corners[(corners < space.high - cell / 2).all(dim=1)]  # (n**D, D)
        if self.stratified:
            offset = torch.rand(b, 1, space.size, device=x.device) * cell
        else:
            offset = torch.full((b, 1, space.size), cell / 2, device=x.device)
        grid = (lower.unsqueeze(0) + offset).view(b, -1, *space.shape)
        e_grid = pairwise_energy(energy, x, grid)
        return torch.logsumexp(-beta * e_grid, dim=1) + space.size * math.log(cell), e_grid

    def __call__(self, energy, x, y, beta: float, step: int) -> Tuple[torch.Tensor, Stats]:
        e_pos = energy(x, y)
        if getattr(energy, "exact_partition", False):  # Z(x) in closed form: exact and cheap
            log_z = energy.log_partition(x, beta)
            stats = {"log_z": log_z.detach().mean()}
        else:
            log_z, e_grid = self.log_partition(energy, x, beta)
            with torch.no_grad():
                stats = {"e_neg": (torch.softmax(-beta * e_grid, dim=1) * e_grid).sum(1).mean()}
        loss = (beta * e_pos + log_z).mean()
        return loss, {"e_pos": e_pos.detach().mean(), **stats}


class FreeEnergyLoss:
    """loss = mean F_beta(x, y_data): pull the data's free energy down, with no negative phase.

    Only sound for a latent model whose architecture bounds the low-energy region (a decoder
    with few z values or a small, regularised z): nothing else keeps the energy from sinking
    everywhere. Annealing beta from small to large moves the soft-min over z towards the min:
    at small beta every z shares every point (the decoders stay together), and as beta grows
    they split the data between them (deterministic annealing).
    """

    def __call__(self, energy, x, y, beta: float, step: int) -> Tuple[torch.Tensor, Stats]:
        e_pos = energy(x, y)
        return e_pos.mean(), {"e_pos": e_pos.detach().mean()}


class ChainNLL:
    """Exact negative log-likelihood of target sequences under a chain energy with K modes z.

    Each mode is a Gibbs distribution over all S^T sequences, P(y | x, z) = exp(-E(x, y, z)) / Z,
    its log Z by the forward algorithm; z is eliminated from -log P(y | x, z) by the min
    (eliminate=min, hard-EM) or the soft-min at beta with a uniform prior over modes (softmin,
    soft-EM: at beta = 1 the exact NLL of the uniform mixture).
    """

    def __call__(self, energy, x, y, beta: float, step: int) -> Tuple[torch.Tensor, Stats]:
        potentials = energy.flat_potentials(x)  # the encoder runs once for both terms
        e = energy.mode_energies(x, y, potentials)  # (B, K)
        f = energy.mode_free_energies(x, 1.0, potentials)  # (B, K): -log Z(x, z)
        loss = eliminate_modes(e - f, energy.eliminate, beta)
        return loss.mean(), {"e_pos": e.detach().min(dim=1).values.mean(), "log_z": (-f).detach().mean()}


class Hinge:
    """Margin loss: relu(m + F(x, y) - F(x, y_bar)) + mean_r relu(m + F(x, y) - F(x, y_r)).

    y_bar is the most offending incorrect answer, argmin F(x, .) over the incorrect region; with
    multi-valued data the other branches at x are correct too, so "incorrect" means farther than
    `exclude` from every training y whose x lies within `x_window` of this x. That constrained
    minimum is either a free minimum of F (one of the inference method's candidates) or lies on
    the region's boundary (y' +- exclude along each axis, for each correct y'), so both are
    searched. The y_r are uniform incorrect y: without them a flat energy is a fixed point (the
    most offending y sits right next to the data) and training from scratch stalls.
    """

    MAX_NEIGHBOURS = 48  # training rows per x taken as its correct answers
    RANDOM = 16  # uniform incorrect negatives per sample, which keep the far landscape up

    def __init__(self, margin: float, exclude: float, x_window: float, inference, x_train, y_train):
        self.margin, self.exclude, self.x_window, self.inference = margin, exclude, x_window, inference
        order = torch.argsort(x_train[:, 0])
        self.x_sorted, self.y_sorted = x_train[order, 0].contiguous(), y_train[order]

    def to(self, device) -> "Hinge":
        self.x_sorted, self.y_sorted = self.x_sorted.to(device), self.y_sorted.to(device)
        return self

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
        """The most offending incorrect y_bar (B, *y_shape) and R uniform incorrect y (B, R, *y_shape)."""
        space, b = energy.y_space, len(y)
        with torch.no_grad():
            answers, answer_mask = self.correct_answers(x)
            answers = torch.cat([y.unsqueeze(1), answers], dim=1)  # the sample's own y is correct
            answer_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=y.device), answer_mask], 1)
            cands = self.inference(energy, x, k=max(self.inference.k, 8))
            flat = answers.flatten(2)  # (B, W, D)
            steps = self.exclude * (1 + 1e-3) * torch.eye(flat.shape[2], device=y.device)
            boundary = torch.cat([flat[:, :, None] + steps, flat[:, :, None] - steps], dim=2).flatten(1, 2)
            boundary = space.project(boundary).view(b, -1, *space.shape)
            pool = torch.cat([cands.y, boundary], dim=1)  # (B, P, *y_shape)
            usable = torch.cat([cands.mask, answer_mask.repeat_interleave(2 * flat.shape[2], dim=1)], dim=1)
            usable &= self.incorrect(pool, answers, answer_mask)
            e = pairwise_energy(energy, x, pool)
            e = torch.where(usable, e, torch.full_like(e, float("inf")))
            y_bar = pool[torch.arange(b, device=y.device), e.argmin(dim=1)]
            uniform = space.sample(b, self.RANDOM, device=y.device)
            uniform_ok = self.incorrect(uniform, answers, answer_mask)
        return y_bar, uniform, uniform_ok

    def __call__(self, energy, x, y, beta: float, step: int) -> Tuple[torch.Tensor, Stats]:
        y_bar, uniform, uniform_ok = self.negatives(energy, x, y)
        e_pos = energy(x, y)
        e_bar = energy(x, y_bar)
        e_uni = pairwise_energy(energy, x, uniform)
        worst = torch.relu(self.margin + e_pos - e_bar)
        spread = (torch.relu(self.margin + e_pos[:, None] - e_uni) * uniform_ok).sum(1) / uniform_ok.sum(1).clamp(min=1)
        loss = (worst + spread).mean()
        return loss, {"e_pos": e_pos.detach().mean(), "e_neg": e_bar.detach().mean(), "e_uniform": e_uni.detach().mean()}


class ContrastiveDivergence:
    """Contrastive divergence with Langevin negatives and a persistent replay buffer:

        loss = mean F(x, y+) - mean F(x, y-) + alpha (F(x, y+)^2 + F(x, y-)^2)

    y- comes from `steps` Langevin steps at the run's beta, started from y values kept in a
    buffer of `buffer_size` earlier negatives (a share `reinit` of the chains restarts from
    uniform y, so new regions keep being explored); the finished chains go back into the buffer.
    The alpha term keeps the energies near zero so that they cannot drift off together. The
    buffer is part of the checkpoint, so a resumed run continues the same chains.
    """

    def __init__(self, steps: int, step_size: float, grad_clip, buffer_size: int, reinit: float, alpha: float,
                 y_space, device):
        self.steps, self.step_size, self.grad_clip = steps, step_size, grad_clip
        self.reinit, self.alpha, self.space = reinit, alpha, y_space
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
        y_neg = langevin_chains(energy, x, start.unsqueeze(1), self.steps, self.step_size, lambda t: beta, self.grad_clip)
        self.buffer[idx] = y_neg[:, 0]
        return y_neg

    def __call__(self, energy, x, y, beta: float, step: int) -> Tuple[torch.Tensor, Stats]:
        y_neg = self.negatives(energy, x, beta)
        e_pos = energy(x, y)
        e_neg = pairwise_energy(energy, x, y_neg)[:, 0]
        loss = e_pos.mean() - e_neg.mean() + self.alpha * (e_pos.pow(2) + e_neg.pow(2)).mean()
        return loss, {"e_pos": e_pos.detach().mean(), "e_neg": e_neg.detach().mean()}
