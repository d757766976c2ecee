"""Case `cd_step`: one contrastive-divergence training step (negatives, loss, backward, Adam step) of our
MLP energy (energy=mlp: 64 hidden units, depth 2, SiLU) on curves-like pairs (x in [-1, 1], y in the box
[-1.2, 1.2]).

ours: ebm_cli.losses.cd.ContrastiveDivergence with fixed settings (30 Langevin steps of 1e-3, gradient
      clip 100 per chain, projection into the box, a replay buffer of 4096, 5% restarts, alpha 0.1), then
      backward and Adam.
peer: the same step written as a plain loop: buffer indices and restarts, an eager Langevin loop with the
      same clip and projection, the loss, backward, Adam.
Check: both from the same weights, with the noise off (beta = inf: the noise term sqrt(2 eta / beta) xi is
exactly 0) and the same starting chains (a buffer of one entry and no restarts, so every chain starts at
the same y whatever indices are drawn): the losses and the weights after the step are equal (allclose).
"""

import math
from typing import List

import torch

from ebm_cli.bench.common import FAILED, PASSED, compare, row, seeded_module, uniform
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.energies.mlp import MLPEnergy
from ebm_cli.losses.cd import ContrastiveDivergence

CD = dict(steps=30, step_size=1e-3, grad_clip=100.0, buffer_size=4096, reinit=0.05, alpha=0.1)  # loss=cd's settings before the speed work
LR = 1e-2  # trainer.lr's default
Y_BOX = BoxSpace(-1.2, 1.2, (1,))
ATOL, RTOL = 1e-6, 1e-5


def make_energy() -> MLPEnergy:
    return MLPEnergy(hidden=64, depth=2, activation="silu", output="linear", x_dim=1, x_low=-1.0, x_high=1.0,
                     y_space=Y_BOX)


class PlainCD:
    """The CD step as a plain loop, with its own replay buffer (N, 1)."""

    def __init__(self, buffer: torch.Tensor, steps: int, step_size: float, grad_clip, reinit: float, alpha: float):
        self.buffer, self.steps, self.eta, self.clip = buffer, steps, step_size, grad_clip
        self.reinit, self.alpha = reinit, alpha

    def step(self, energy, opt, x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
        """x, y: (B, 1) data pairs; returns the loss (detached)."""
        b, device, low, high = x.shape[0], x.device, Y_BOX.low, Y_BOX.high
        idx = torch.randint(0, len(self.buffer), (b,), device=device)
        start = self.buffer[idx]
        fresh = torch.rand(b, device=device) < self.reinit
        start = torch.where(fresh.unsqueeze(1), low + (high - low) * torch.rand(b, 1, device=device), start)
        scale = math.sqrt(2 * self.eta / beta)
        y_neg = start
        for _ in range(self.steps):
            y_neg = y_neg.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(energy(x, y_neg).sum(), y_neg)
            with torch.no_grad():
                if self.clip is not None:
                    g = g * (self.clip / g.norm(dim=1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0)
                y_neg = y_neg - self.eta * g
                if scale > 0:
                    y_neg = y_neg + scale * torch.randn(y_neg.shape, device=device)
                y_neg = y_neg.clamp(low, high)
        y_neg = y_neg.detach()
        self.buffer[idx] = y_neg
        e_pos, e_neg = energy(x, y), energy(x, y_neg)
        loss = e_pos.mean() - e_neg.mean() + self.alpha * (e_pos.pow(2) + e_neg.pow(2)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()


def ours_step(loss_fn: ContrastiveDivergence, energy, opt, x: torch.Tensor, y: torch.Tensor, beta: float):
    loss, _ = loss_fn(energy, x, y, beta)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def pair(device: torch.device, seed: int, buffer: torch.Tensor, **cd):
    """(ours: energy, Adam, loss) and (plain: energy, Adam, PlainCD) from the same weights and buffer."""
    energy_a, energy_b = seeded_module(make_energy, device, seed), seeded_module(make_energy, device, seed)
    ours = ContrastiveDivergence(**cd, y_space=Y_BOX, device=device)
    ours.buffer = buffer.clone()
    plain = PlainCD(buffer.clone(), cd["steps"], cd["step_size"], cd["grad_clip"], cd["reinit"], cd["alpha"])
    return ((energy_a, torch.optim.Adam(energy_a.parameters(), lr=LR), ours),
            (energy_b, torch.optim.Adam(energy_b.parameters(), lr=LR), plain))


def run(settings, device: torch.device, seed: int) -> List[dict]:
    rows = []
    cd = {**CD, "steps": settings.langevin_steps} if settings.tiny else CD  # tiny: a few Langevin steps
    for b in settings.cd_batches:
        x = uniform((b, 1), -1.0, 1.0, seed + 1, device)
        y = (0.6 + 0.3 * torch.sin(math.pi * x)) + 0.02 * uniform((b, 1), -1.0, 1.0, seed + 2, device)

        # the check: noise off, every chain from one y, the same weights
        start = uniform((1, 1), Y_BOX.low, Y_BOX.high, seed + 3, device)
        (ea, oa, la), (eb, ob, pb) = pair(device, seed, start, **{**cd, "buffer_size": 1, "reinit": 0.0})
        loss_ours = ours_step(la, ea, oa, x, y, math.inf)
        loss_plain = pb.step(eb, ob, x, y, math.inf)
        with torch.no_grad():
            weights = max(float((pa - pp).abs().max()) for pa, pp in zip(ea.parameters(), eb.parameters()))
            ok = (torch.allclose(loss_ours, loss_plain, atol=ATOL, rtol=RTOL) and all(
                torch.allclose(pa, pp, atol=ATOL, rtol=RTOL) for pa, pp in zip(ea.parameters(), eb.parameters())))

        # the timing: loss=cd's own settings, noise on (beta = 1)
        buffer = uniform((cd["buffer_size"], 1), Y_BOX.low, Y_BOX.high, seed + 4, device)
        (ea, oa, la), (eb, ob, pb) = pair(device, seed, buffer, **cd)
        times = compare({"ours": lambda: ours_step(la, ea, oa, x, y, 1.0), "plain": lambda: pb.step(eb, ob, x, y, 1.0)},
                        device, settings.repeats, settings.max_seconds)
        ours_s, peer_s = times["ours"], times["plain"]
        rows.append(row("cd_step", f"B={b}", "ebm_cli ContrastiveDivergence", "eager loop", ours_s, peer_s,
                        PASSED if ok else FAILED,
                        f"{cd['steps']} Langevin steps + loss + backward + Adam; check: noise off, same start: losses "
                        f"{float(loss_ours):.6g} vs {float(loss_plain):.6g}, weights after the step max |diff| "
                        f"{weights:.1e} (atol {ATOL:g}, rtol {RTOL:g})",
                        loss_ours=float(loss_ours), loss_peer=float(loss_plain), weights_max_abs_diff=weights))
    return rows
