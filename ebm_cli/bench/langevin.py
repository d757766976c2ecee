"""Cases `langevin` and `gradient`: chains on a 2-D y under an MLP energy 2 -> 128 -> 128 -> 1 (SiLU).

ours:  ebm_cli.inference.langevin.langevin_chains (noise on: Langevin; noise off: gradient descent)
peers: TorchEBM's LangevinDynamics (with its noise scale 0 for `gradient`: its GradientDescentSampler has no clamp), and a plain eager loop
       (y.requires_grad, autograd.grad of the energy's sum, y <- y - eta g + sqrt(2 eta / beta) xi).

All three evaluate one and the same weights: ours the run's own energy class, MLPEnergy with an empty
x (B, 0) and y (B, 1, 2) (one chain per row) in the box [-1, 1]^2, whose input scaling is then the
identity, so F(x, y) = mlp(y); the peers U(y) = mlp(y) on y (B, 2), the same nn.Sequential. All three
clamp the chains into the box after every step (TorchEBM's `clamp`, ours' projection), start uniformly
in it, and ours runs without gradient clipping: the three updates are the same arithmetic. Ours takes
grad_y F from MLPEnergy's closed form (ebm_cli.core.energy.ClosedFormGradient), the peers from autograd.
Check: with the noise off the final states agree (allclose, atol 1e-5, rtol 1e-4).
"""

import math
from typing import Callable, Dict, List

import torch
from torch import nn

from ebm_cli.bench.common import FAILED, PASSED, compare, import_peer, max_abs_diff, peer_label, row, seeded_module, \
    skipped_row, uniform
from ebm_cli.core.spaces import BoxSpace
from ebm_cli.energies.mlp import MLPEnergy
from ebm_cli.inference.langevin import langevin_chains

HIDDEN = 128
ETA = 1e-2  # the step size: large enough that the chains move visibly in 100 steps
BETA = 1.0  # the inverse temperature of the noise-on runs
BOX = BoxSpace(-1.0, 1.0, (2,))  # MLPEnergy maps its box to [-1, 1]: on this one its input scaling is the identity
CHECK_CHAINS = 4096  # the noise-off check runs on the first chains of a batch (chains are independent)
MAX_CHAIN_STEPS = 4096 * 100  # chains x steps of one timed run (see timed_steps)
ATOL, RTOL = 1e-5, 1e-4
OURS = "ebm_cli langevin_chains"


def make_energy() -> MLPEnergy:
    """F(x, y) = mlp(y): the MLP 2 -> 128 -> 128 -> 1 (SiLU) on y, x empty."""
    return MLPEnergy(HIDDEN, 2, "silu", "linear", x_dim=0, x_low=0.0, x_high=1.0, y_space=BOX)


def eager_chains(mlp: nn.Module, y0: torch.Tensor, steps: int, eta: float, beta: float, noise: bool,
                 generator=None) -> torch.Tensor:
    """The textbook loop on y0 (B, 2) -> (B, 2): y <- clamp(y - eta grad U(y) + sqrt(2 eta / beta) xi)."""
    scale = math.sqrt(2 * eta / beta)
    y = y0.detach().clone()
    for _ in range(steps):
        y.requires_grad_(True)
        (g,) = torch.autograd.grad(mlp(y).sum(), y)
        with torch.no_grad():
            y = y - eta * g
            if noise:
                y = y + scale * torch.randn(y.shape, generator=generator, device=y.device)
            y = y.clamp(BOX.low, BOX.high)
    return y.detach()


def torchebm_model(torchebm, mlp: nn.Module, device: torch.device):
    """The MLP as a TorchEBM BaseModel: U(y) = mlp(y), (B, 2) -> (B,)."""
    from torchebm.core import BaseModel

    class MLPModel(BaseModel):
        def __init__(self):
            super().__init__(device=device)
            self.mlp = mlp

        def forward(self, y: torch.Tensor) -> torch.Tensor:
            return self.mlp(y)[:, 0]

    return MLPModel()


def torchebm_runs(torchebm, mlp: nn.Module, device: torch.device) -> Dict[str, Callable]:
    """TorchEBM's samplers as functions of (y0, steps, generator) -> (B, 2).

    Its Langevin update is y - h grad U + sqrt(2 h) * noise_scale * xi (Euler-Maruyama with diffusion
    noise_scale^2): step_size = eta and noise_scale = 1 / sqrt(beta) is ours' y - eta g +
    sqrt(2 eta / beta) xi. Its constructor refuses noise_scale=0 as a number; a ConstantScheduler(0)
    passes, and with it the update is the plain gradient step (its noise is drawn and multiplied by 0).
    """
    from torchebm.core import ConstantScheduler
    from torchebm.samplers import LangevinDynamics

    model = torchebm_model(torchebm, mlp, device)
    box = (BOX.low, BOX.high)
    noisy = LangevinDynamics(model, step_size=ETA, noise_scale=1.0 / math.sqrt(BETA), clamp=box, device=device)
    silent = LangevinDynamics(model, step_size=ETA, noise_scale=ConstantScheduler(0.0), clamp=box, device=device)
    # Its GradientDescentSampler has no clamp: the noise-free Langevin sampler is its projected descent.
    return {
        "langevin": lambda y0, steps, gen=None: noisy.sample(x=y0, n_steps=steps, generator=gen),
        "langevin_noise_off": lambda y0, steps, gen=None: silent.sample(x=y0, n_steps=steps),
        "gradient": lambda y0, steps, gen=None: silent.sample(x=y0, n_steps=steps),
    }


def timed_steps(batch: int, steps: int) -> int:
    """Steps per timed run: all of them, but at most MAX_CHAIN_STEPS chain-steps per run (at least 2), so
    that the largest batch stays seconds per run on a CPU. The cost per step does not depend on the step."""
    return min(steps, max(2, math.ceil(MAX_CHAIN_STEPS / batch)))


def run(settings, device: torch.device, seed: int) -> List[dict]:
    """Rows of the cases `langevin` and `gradient` (whichever settings.cases names), per batch size."""
    cases = [c for c in ("langevin", "gradient") if c in settings.cases]
    energy = seeded_module(make_energy, device, seed)
    mlp = energy.net  # the peers' U(y): the same weights
    torchebm = import_peer("torchebm")
    peer_fns = torchebm_runs(torchebm, mlp, device) if torchebm is not None else None
    steps, rows = settings.langevin_steps, []

    def ours(y0: torch.Tensor, n: int, noise: bool, gen=None) -> torch.Tensor:
        x = torch.empty(y0.shape[0], 0, device=device)
        return langevin_chains(energy, x, y0.unsqueeze(1), BOX, n, ETA, lambda t: BETA, None, noise, gen)[:, 0]

    for b in settings.langevin_batches:
        y0 = uniform((b, 2), BOX.low, BOX.high, seed + b, device)
        y_check = y0[:CHECK_CHAINS]
        checked = f"{len(y_check)} chains" if len(y_check) < b else "all chains"
        gen = torch.Generator(device=device).manual_seed(seed)
        n = timed_steps(b, steps)
        size = f"B={b}, {n} steps"
        for case in cases:
            noise = case == "langevin"
            tebm_name = peer_label("torchebm", "LangevinDynamics" if noise else "LangevinDynamics, noise 0")
            # name -> (label, run(k steps) on y0, the noise-off run on y_check)
            impls = {"ours": (OURS, lambda k: ours(y0, k, noise, gen), lambda: ours(y_check, steps, noise=False))}
            if peer_fns is not None:
                key, check_key = ("langevin", "langevin_noise_off") if noise else ("gradient", "gradient")
                impls["torchebm"] = (tebm_name, lambda k: peer_fns[key](y0, k, gen),
                                     lambda: peer_fns[check_key](y_check, steps))
            impls["eager"] = ("eager loop", lambda k: eager_chains(mlp, y0, k, ETA, BETA, noise, gen),
                              lambda: eager_chains(mlp, y_check, steps, ETA, BETA, False))
            runs = {k: (lambda f=f: f(n)) for k, (_, f, _) in impls.items()}
            warmups = {k: (lambda f=f: f(min(n, 2))) for k, (_, f, _) in impls.items()}
            times = compare(runs, device, settings.repeats, settings.max_seconds, warmups=warmups)
            ours_s, ours_check = times["ours"], impls["ours"][2]()
            if peer_fns is None:
                rows.append(skipped_row(case, size, OURS, tebm_name, ours_s))
            what = "noise off" if noise else "gradient descent"
            for name in [k for k in impls if k != "ours"]:
                label, _, check_fn = impls[name]
                peer_s, peer_check = times[name], check_fn()
                diff = max_abs_diff(ours_check, peer_check)
                ok = torch.allclose(ours_check, peer_check, atol=ATOL, rtol=RTOL)
                how = " (TorchEBM: noise_scale=ConstantScheduler(0))" if noise and name == "torchebm" else ""
                part = "" if n == steps else f" (timed on {n} of {steps} steps, ours and peer alike)"
                note = (f"{1e6 * ours_s / n:.0f} vs {1e6 * peer_s / n:.0f} us/step{part}; check: {what}{how}, "
                        f"{steps} steps, final states allclose (atol {ATOL:g}, rtol {RTOL:g}) on {checked}, "
                        f"max |diff| {diff:.1e}")
                rows.append(row(case, size, OURS, label, ours_s, peer_s, PASSED if ok else FAILED, note,
                                steps=n, us_per_step_ours=1e6 * ours_s / n, us_per_step_peer=1e6 * peer_s / n,
                                max_abs_diff=diff))
    return rows
