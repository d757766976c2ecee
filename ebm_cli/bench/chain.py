"""Case `chain`: log Z (the forward algorithm) and the Viterbi path of chain energies

    E(y) = sum_t u[t, y_t] + sum_{t>1} p[y_{t-1}, y_t],   u: (B, T, S),  p: (S, S) shared,

ours:  ebm_cli.dynamic_programming.forward_free_energy (F_1 = -log Z at beta = 1) and viterbi
peers: pytorch-crf's CRF (its forward algorithm `_compute_normalizer`, and `decode`) with zero start
       and end transitions and transitions = -p, emissions = -u (it maximises scores = -E); torch-struct's
       LinearChainCRF (`partition`, `argmax`) on edge potentials phi[b, n, j, i] = -(u[b, n+1, j] + p[i, j]),
       with -u[b, 0, i] added at n = 0.

Timed: each implementation's own calls on inputs already in its format (the conversions are adapters,
outside the clock), ours and one peer in turns, peer by peer. Checks: log Z equal to a relative 1e-4 (|a - b| <= 1e-4 max(1, |b|)); paths equal (a
row whose paths differ passes only if both paths have the same energy to that tolerance: a tie).
"""

import math
import warnings
from typing import List, Tuple

import torch

from ebm_cli.bench.common import FAILED, PASSED, compare, host_default, import_peer, max_abs_diff, peer_label, \
    randn, row, seeded_module, skipped_row
from ebm_cli.dynamic_programming import forward_free_energy, sequence_energy, viterbi

RTOL = 1e-4
# torch-struct's linear-chain scan multiplies (S x S) matrices in log space by broadcasting: its first
# level holds B * T/2 * S^3 floats, and its argmax keeps about twice that for its backward pass. A size
# whose first level exceeds this budget is skipped for torch-struct (a row saying so).
TORCH_STRUCT_BYTES = 5 << 29  # 2.5 GiB: 256x128x32 (2.1 GB) runs, 1024x256x64 (137 GB) does not
OURS_LOGZ, OURS_VITERBI = "ebm_cli forward_free_energy", "ebm_cli viterbi"


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """|a - b| <= RTOL max(1, |b|) everywhere."""
    a, b = a.detach().double(), b.detach().double()
    return bool(((a - b).abs() <= RTOL * b.abs().clamp(min=1.0)).all())


def paths_agree(u: torch.Tensor, p: torch.Tensor, ours: torch.Tensor, peer: torch.Tensor) -> Tuple[bool, int]:
    """(every row equal or a tie, rows that differ): paths (B, T)."""
    differ = (ours != peer).any(dim=1)
    n = int(differ.sum())
    if n == 0:
        return True, 0
    e_ours = sequence_energy(u[differ], p, ours[differ])
    e_peer = sequence_energy(u[differ], p, peer[differ])
    return close(e_ours, e_peer), n


def torch_struct_bytes(b: int, t: int, s: int) -> int:
    """The bytes of torch-struct's first level of log-space matrix products: B * T/2 * S^3 floats."""
    bins = 2 ** math.ceil(math.log2(max(t - 1, 1)))
    return b * (bins // 2) * s ** 3 * 4


def edge_potentials(u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """torch-struct's log potentials phi (B, T-1, S, S), [b, n, next, previous] = -(energy of that edge),
    the unary terms folded in (the first step's into n = 0)."""
    phi = -(u[:, 1:, :, None] + p.t()[None, None])  # [b, n, j, i] = -(u[b, n+1, j] + p[i, j])
    phi[:, 0] = phi[:, 0] - u[:, 0, None, :]
    return phi.contiguous()


def edge_paths(edges: torch.Tensor) -> torch.Tensor:
    """torch-struct's argmax (B, T-1, S, S) one-hot edges [next, previous] -> paths (B, T)."""
    first = edges[:, 0].sum(1).argmax(-1)  # (B,): the previous state of the first edge
    rest = edges.sum(-1).argmax(-1)  # (B, T-1): the next state of every edge
    return torch.cat([first[:, None], rest], dim=1)


def run(settings, device: torch.device, seed: int) -> List[dict]:
    rows = []
    crf_mod, ts_mod = import_peer("pytorch-crf"), import_peer("torch-struct")
    crf_name, ts_name = peer_label("pytorch-crf", "CRF"), peer_label("torch-struct", "LinearChainCRF")

    def timed(fns):  # the check's calls just ran every implementation once: they are the warm-up
        return compare(fns, device, settings.repeats, settings.max_seconds, warm=False)

    for b, t, s in settings.chain_sizes:
        size = f"{b}x{t}x{s}"
        u = randn((b, t, s), seed + 1, device)
        p = randn((s, s), seed + 2, device)
        logz_fns = {"ours": lambda: forward_free_energy(u, p, 1.0)}
        vit_fns = {"ours": lambda: viterbi(u, p)}
        with torch.no_grad():
            logz = -logz_fns["ours"]()
            paths = vit_fns["ours"]()[1]

        # pytorch-crf: one shared transition matrix, start/end transitions set to zero
        if crf_mod is not None:
            crf = seeded_module(lambda: crf_mod.CRF(s, batch_first=True), device, seed)
            with torch.no_grad():
                crf.start_transitions.zero_()
                crf.end_transitions.zero_()
                crf.transitions.copy_(-p)
            scores = -u  # (B, T, S), batch first
            mask = torch.ones((b, t), dtype=torch.bool, device=device)
            # its forward() makes the same transposes before it calls its normaliser
            logz_fns["crf"] = lambda: crf._compute_normalizer(scores.transpose(0, 1), mask.transpose(0, 1))
            vit_fns["crf"] = lambda: crf.decode(scores, mask)
            with torch.no_grad():
                crf_logz = logz_fns["crf"]()
                crf_paths = torch.tensor(vit_fns["crf"](), dtype=torch.long, device=device)

        # torch-struct, where its memory allows
        ts_bytes = torch_struct_bytes(b, t, s)
        ts_runs = ts_mod is not None and ts_bytes <= TORCH_STRUCT_BYTES
        if ts_runs:
            with torch.no_grad():
                phi = edge_potentials(u, p)

            def crf_dist():
                with warnings.catch_warnings():  # torch-struct's distributions do not declare arg_constraints
                    warnings.simplefilter("ignore", UserWarning)
                    return ts_mod.LinearChainCRF(phi)

            def in_host(fn):
                def call():
                    with host_default():  # it builds its masks on the default device
                        return fn()
                return call

            logz_fns["ts"] = in_host(lambda: crf_dist().partition)
            vit_fns["ts"] = in_host(lambda: crf_dist().argmax)
            ts_logz = logz_fns["ts"]().detach()
            ts_paths = edge_paths(vit_fns["ts"]().detach())

        def timed_beside(key):
            """Ours and one peer, in turns: a slow peer's aftermath (torch-struct's gigabytes, its threads)
            falls on ours only in its own rows."""
            with torch.no_grad():
                return (timed({"ours": logz_fns["ours"], **({key: logz_fns[key]} if key else {})}),
                        timed({"ours": vit_fns["ours"], **({key: vit_fns[key]} if key else {})}))

        results = {}
        if crf_mod is not None:
            results["crf"] = (crf_logz, crf_paths)
        if ts_runs:
            results["ts"] = (ts_logz, ts_paths)
        for key, name, module in (("crf", crf_name, crf_mod), ("ts", ts_name, ts_mod)):
            if key in results:
                logz_s, vit_s = timed_beside(key)
                peer_logz, peer_paths = results[key]
                diff = max_abs_diff(logz, peer_logz)
                rows.append(row("chain_logz", size, OURS_LOGZ, name, logz_s["ours"], logz_s[key],
                                PASSED if close(logz, peer_logz) else FAILED,
                                f"check: log Z equal to a relative {RTOL:g}, max |diff| {diff:.1e}", max_abs_diff=diff))
                ok, n = paths_agree(u, p, paths, peer_paths)
                rows.append(row("chain_viterbi", size, OURS_VITERBI, name, vit_s["ours"], vit_s[key],
                                PASSED if ok else FAILED,
                                f"check: paths equal ({n} of {b} differ{', ties' if n and ok else ''})",
                                paths_differing=n))
                continue
            why = None if module is None else (
                f"skipped at this size: torch-struct's log-space products need {ts_bytes / 1e9:.1f} GB here "
                f"(budget {TORCH_STRUCT_BYTES / 1e9:.1f} GB)")
            logz_s, vit_s = timed_beside(None)
            rows += [skipped_row("chain_logz", size, OURS_LOGZ, name, logz_s["ours"], why),
                     skipped_row("chain_viterbi", size, OURS_VITERBI, name, vit_s["ours"], why)]
    return rows
