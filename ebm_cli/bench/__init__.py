"""`ebm-run task=bench`: ebm-run's core computations timed beside their peers, in one process, on the same
weights and inputs, each with a correctness check.

| case            | ours                                   | peers                                        |
| --------------- | -------------------------------------- | -------------------------------------------- |
| langevin        | inference.langevin.langevin_chains     | TorchEBM LangevinDynamics, an eager loop     |
| gradient        | the same, noise off                    | TorchEBM GradientDescentSampler, eager loop  |
| chain           | dynamic_programming: log Z, viterbi    | pytorch-crf CRF, torch-struct LinearChainCRF |
| free_energy     | DecodingEnergy.pairwise (soft_min)     | a per-row loop                               |
| cd_step         | losses.cd.ContrastiveDivergence step   | the same step as a plain loop                |
| time_to_quality | ebm-run's training, to coverage 0.95   | TorchEBM's CD recipe                         |

Writes <run dir>/bench.json (a list of rows: case, size, ours, peer, ours_s, peer_s, ratio = peer_s /
ours_s, check, note) and bench_env.json (device, versions, sizes); prints the table. A peer that is not
installed gives rows with peer_s null and check "skipped". Any failed check ends the command with one
line and exit code 1 (after the files are written). Everything runs on trainer.device.

With task.contention=true every case runs a second time beside a CPU-bound neighbour process
(bench/neighbour.py: task.neighbour_threads busy cores), and each row gains ours_s_busy, peer_s_busy
and ratio_busy: the speed that a user's busy machine (a sweep, a second run) sees.
"""

import logging
import time
from pathlib import Path
from typing import Any, Dict, List

from ebm_cli.runtime.console import print_results

log = logging.getLogger("ebm_cli")


def run_bench(cfg, run_dir) -> List[Dict[str, Any]]:
    """Run the cases of cfg.task (task=bench) on cfg.trainer.device; write and print the results; the rows.

    Raises UserError for a bad setting (before anything runs) and when a check failed (after writing)."""
    from ebm_cli.bench import chain, cd, free_energy, langevin, quality, report
    from ebm_cli.bench.common import FAILED
    from ebm_cli.bench.neighbour import Neighbour
    from ebm_cli.bench.settings import check_bench
    from ebm_cli.build import resolve_device
    from ebm_cli.errors import UserError

    settings = check_bench(cfg)
    device = resolve_device(cfg.trainer.device)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = int(cfg.seed)
    steps = [
        # each a function of the folder it may write into (time_to_quality trains runs there)
        ({"langevin", "gradient"}, lambda folder: langevin.run(settings, device, seed)),
        ({"chain"}, lambda folder: chain.run(settings, device, seed)),
        ({"free_energy"}, lambda folder: free_energy.run(settings, device, seed)),
        ({"cd_step"}, lambda folder: cd.run(settings, device, seed)),
        ({"time_to_quality"}, lambda folder: quality.run(cfg, settings, device, folder)),
    ]
    rows: List[Dict[str, Any]] = []
    start = time.perf_counter()
    for names, case in steps:
        chosen = [n for n in settings.cases if n in names]
        if not chosen:
            continue
        began = time.perf_counter()
        idle = seeded(lambda: case(run_dir), device, seed)
        if settings.contention:
            with Neighbour(settings.neighbour_threads) as neighbour:
                busy = seeded(lambda: case(run_dir / "beside_neighbour"), device, seed)
                if not neighbour.running:
                    raise UserError("task.contention=true: the neighbour process ended before the case did")
            idle = [beside(row, busy_row) for row, busy_row in zip(idle, busy)]
        rows += idle
        log.info("bench: %s done in %.1f s", "+".join(chosen), time.perf_counter() - began)
    env = report.environment(device, settings, time.perf_counter() - start)
    report.write(run_dir, rows, env)
    report.show(rows, env)
    print_results(run_dir, ["bench.json", "bench_env.json"] + [p.name + "/" for p in sorted(Path(run_dir).iterdir())
                                                               if p.is_dir() and not p.name.startswith(".")])
    failed = [r for r in rows if r["check"] == FAILED]
    if failed:
        first = failed[0]
        raise UserError(f"bench: {len(failed)} check(s) failed, first {first['case']} {first['size']} vs "
                        f"{first['peer']} (see {run_dir / 'bench.json'})")
    return rows


def seeded(case, device, seed: int) -> List[Dict[str, Any]]:
    """The case's rows; it draws from its own copy of the RNG state (selecting cases, or running one
    again beside a neighbour, changes nothing else)."""
    import torch

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return case()


def beside(row: Dict[str, Any], busy: Dict[str, Any]) -> Dict[str, Any]:
    """An idle row with its run beside the neighbour: *_busy columns; a check failed in either fails."""
    from ebm_cli.bench.common import FAILED

    merged = {**row, "ours_s_busy": busy["ours_s"], "peer_s_busy": busy["peer_s"], "ratio_busy": busy["ratio"]}
    if busy["check"] == FAILED:
        merged["check"] = FAILED
        merged["note"] = f"{row.get('note') or ''} | beside the neighbour: {busy.get('note') or 'failed'}".strip(" |")
    return merged
