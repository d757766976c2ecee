"""Case `free_energy`: F_beta(x, y) = -1/beta log sum_z exp(-beta E(x, y, z)) over K discrete z values on
an X x Y landscape, for the decoder energy E = ||y - g(x, z)||^2 (ebm_cli.energies.latent.DecoderEnergy
with energy/z=discrete: K predictions g(x, z) per x).

ours: the energy's pairwise form (ebm_cli.core.energy.pairwise_energy -> DecodingEnergy.pairwise): g(x, z)
      decoded once per x, then one (X, Y, K) energy tensor and ebm_cli.free_energy.soft_min over z.
peer: a per-row Python loop: one x at a time, its K predictions from the same decoder, the (Y, K)
      energies and a plain log-sum-exp.
Check: equal to 1e-5 (absolute).
"""

from typing import List

import torch

from ebm_cli.bench.common import FAILED, PASSED, compare, max_abs_diff, row, seeded_module
from ebm_cli.core.energy import pairwise_energy
from ebm_cli.core.spaces import BoxSpace, DiscreteZ
from ebm_cli.energies.latent import DecoderEnergy

BETA = 10.0  # soft enough that every z counts, hard enough that F is not just min E - log(K) / beta
Y_BOX = BoxSpace(-1.2, 1.2, (1,))
ATOL = 1e-5


def per_row(energy: DecoderEnergy, x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """F_beta for x (X, 1) and y (X, Y, 1) -> (X, Y), one x row at a time."""
    z, _ = energy.nodes(x.device)  # (K, 1): every z value
    out = []
    for i in range(x.shape[0]):
        g, r = energy.decode_all(x[i:i + 1], z.unsqueeze(0))  # (1, K, 1), (1, K)
        e = (y[i].unsqueeze(1) - g[0].unsqueeze(0)).pow(2).sum(-1) + r  # (Y, K)
        out.append(-torch.logsumexp(-beta * e, dim=1) / beta)
    return torch.stack(out)


def run(settings, device: torch.device, seed: int) -> List[dict]:
    nx, ny, k = settings.landscape
    energy = seeded_module(lambda: DecoderEnergy(hidden=64, depth=2, z=DiscreteZ(k), x_dim=1, x_low=-1.0,
                                                 x_high=1.0, y_space=Y_BOX), device, seed)
    energy.eval()
    energy.set_beta(BETA)
    x = torch.linspace(-1.0, 1.0, nx, device=device).unsqueeze(1)  # (X, 1)
    y = torch.linspace(Y_BOX.low, Y_BOX.high, ny, device=device).view(1, ny, 1).expand(nx, ny, 1)  # (X, Y, 1)
    with torch.no_grad():
        ours = pairwise_energy(energy, x, y)
        peer = per_row(energy, x, y, BETA)
        times = compare({"ours": lambda: pairwise_energy(energy, x, y), "loop": lambda: per_row(energy, x, y, BETA)},
                        device, settings.repeats, settings.max_seconds)
        ours_s, peer_s = times["ours"], times["loop"]
    diff = max_abs_diff(ours, peer)
    ok = ours.shape == peer.shape and diff <= ATOL
    note = f"F_beta at beta={BETA:g} over {k} z values; check: equal to {ATOL:g} (absolute), max |diff| {diff:.1e}"
    return [row("free_energy", f"{nx}x{ny}x{k}", "ebm_cli pairwise soft_min", "per-row loop", ours_s, peer_s,
                PASSED if ok else FAILED, note, max_abs_diff=diff)]
