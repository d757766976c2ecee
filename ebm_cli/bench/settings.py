"""The bench's settings: cfg.task's bench keys, a null one filled from the preset of task.size, every
value checked (a UserError naming the key) before anything runs or is written."""

import math
import re
from dataclasses import dataclass
from typing import Tuple

from ebm_cli.errors import UserError, require, require_choice
from ebm_cli.schema import BENCH_CASES

# full: the benchmark's own sizes. tiny: every case in a few seconds in all (a smoke test of the code
# paths and their checks; its timings measure overheads, not the implementations).
PRESETS = {
    "full": dict(repeats=5, max_seconds=10.0, langevin_batches=[256, 4096, 65536], langevin_steps=100,
                 chain_sizes=["256x128x32", "1024x256x64"], landscape="256x256x64", cd_batches=[128, 4096],
                 time_limit=120.0, quality_eval_every=100),
    "tiny": dict(repeats=1, max_seconds=1.0, langevin_batches=[32], langevin_steps=5, chain_sizes=["4x12x5"],
                 landscape="8x8x4", cd_batches=[16], time_limit=3.0, quality_eval_every=5),
}


@dataclass(frozen=True)
class BenchSettings:
    size: str
    cases: Tuple[str, ...]
    repeats: int
    max_seconds: float
    langevin_batches: Tuple[int, ...]
    langevin_steps: int
    chain_sizes: Tuple[Tuple[int, int, int], ...]  # (batch, length, states)
    landscape: Tuple[int, int, int]  # (x values, y values, z values)
    cd_batches: Tuple[int, ...]
    time_limit: float
    quality_eval_every: int
    contention: bool = False  # every case again beside a CPU-bound neighbour (bench/neighbour.py)
    neighbour_threads: int = 1

    @property
    def tiny(self) -> bool:
        return self.size == "tiny"


def _dims(key: str, text: str, count: int = 3) -> Tuple[int, ...]:
    """'256x128x32' -> (256, 128, 32); a UserError naming task.<key> otherwise."""
    parts = str(text).lower().split("x")
    ok = len(parts) == count and all(re.fullmatch(r"\d+", p) for p in parts) and all(int(p) > 0 for p in parts)
    require(ok, f"task.{key}", text, f"must be {count} positive whole numbers joined by x, e.g. "
            f"{'x'.join(['256', '128', '32'][:count])}")
    return tuple(int(p) for p in parts)


def _positive(key: str, value, whole: bool = True) -> None:
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    require(finite and value > 0 and (not whole or float(value).is_integer()), f"task.{key}", value,
            "must be a whole number > 0" if whole else "must be > 0")


def bench_settings(cfg) -> BenchSettings:
    """cfg.task's bench settings, presets filled in and every value checked (UserError otherwise)."""
    task = cfg.task
    require_choice("task.size", task.size, tuple(PRESETS))
    preset = PRESETS[task.size]
    value = {key: (task[key] if task.get(key) is not None else default) for key, default in preset.items()}

    cases = [str(c) for c in (task.cases or [])]
    require(bool(cases), "task.cases", cases, f"needs at least one of {', '.join(BENCH_CASES)}")
    for case in cases:
        require_choice("task.cases", case, BENCH_CASES)
    for key in ("repeats", "langevin_steps", "quality_eval_every"):
        _positive(key, value[key])
    for key in ("max_seconds", "time_limit"):
        _positive(key, value[key], whole=False)
    for key in ("langevin_batches", "cd_batches"):
        require(len(value[key]) > 0, f"task.{key}", list(value[key]), "needs at least one batch size")
        for b in value[key]:
            _positive(key, b)
    require(len(value["chain_sizes"]) > 0, "task.chain_sizes", list(value["chain_sizes"]), "needs at least one BxTxS")
    chain_sizes = tuple(_dims("chain_sizes", s) for s in value["chain_sizes"])
    for b, t, s in chain_sizes:
        require(t >= 2, "task.chain_sizes", f"{b}x{t}x{s}", "needs sequences of length >= 2")
    contention = task.get("contention", False)
    require(isinstance(contention, bool), "task.contention", contention, "must be true or false")
    threads = task.get("neighbour_threads", 1)
    _positive("neighbour_threads", threads)
    return BenchSettings(
        size=task.size, cases=tuple(dict.fromkeys(cases)), repeats=int(value["repeats"]),
        max_seconds=float(value["max_seconds"]), langevin_batches=tuple(int(b) for b in value["langevin_batches"]),
        langevin_steps=int(value["langevin_steps"]), chain_sizes=chain_sizes,
        landscape=_dims("landscape", value["landscape"]), cd_batches=tuple(int(b) for b in value["cd_batches"]),
        time_limit=float(value["time_limit"]), quality_eval_every=int(value["quality_eval_every"]),
        contention=contention, neighbour_threads=int(threads))


def check_bench(cfg) -> BenchSettings:
    """Every check of task=bench that the shared validation does not make: the bench's settings, the
    device, keys the schema does not know. Raises UserError; returns the settings."""
    from ebm_cli.build import resolve_device  # torch: imported when a bench runs
    from ebm_cli.validate import check_known_keys

    check_known_keys(cfg)
    if cfg.task.name != "bench":
        raise UserError(f"task.name={cfg.task.name}: the bench runs with task=bench")
    settings = bench_settings(cfg)
    require(re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.trainer.device) is not None, "trainer.device",
            cfg.trainer.device, "must be auto, cpu, cuda or cuda:N")
    resolve_device(cfg.trainer.device)
    return settings

