"""The bench's outputs: bench.json (a list of rows), bench_env.json (device, versions, sizes) and a table."""

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import torch
from rich.table import Table

from ebm_cli.bench.common import FAILED, PASSED, PEERS, peer_version
from ebm_cli.runtime.console import get_console


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def environment(device: torch.device, settings, seconds: float) -> Dict[str, Any]:
    from ebm_cli import __version__

    return {
        "device": device_name(device),
        "versions": {"ebm_cli": __version__, "torch": torch.__version__, "python": platform.python_version(),
                     **{name: peer_version(name) for name in PEERS}},
        "size": settings.size,
        "cases": list(settings.cases),
        "sizes": {"langevin_batches": list(settings.langevin_batches), "langevin_steps": settings.langevin_steps,
                  "chain_sizes": ["x".join(map(str, s)) for s in settings.chain_sizes],
                  "landscape": "x".join(map(str, settings.landscape)), "cd_batches": list(settings.cd_batches),
                  "time_limit": settings.time_limit, "quality_eval_every": settings.quality_eval_every},
        "timing": {"repeats": settings.repeats, "max_seconds": settings.max_seconds,
                   "statistic": "median of the timed runs after one warm-up; peer_s / ours_s = ratio"},
        "contention": ({"neighbour_threads": settings.neighbour_threads, "columns": "*_busy: beside a CPU-bound "
                        "neighbour process"} if settings.contention else None),
        "seconds": seconds,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
    }


def _write(path: Path, payload) -> None:
    """Atomic: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def write(run_dir: Path, rows: List[Dict[str, Any]], env: Dict[str, Any]) -> None:
    _write(run_dir / "bench.json", rows)
    _write(run_dir / "bench_env.json", env)


def _seconds(v) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def table(rows: List[Dict[str, Any]], env: Dict[str, Any]) -> Table:
    """One line per row; the notes (what was checked, caps, us/step) are printed below it by number."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v and k != "python")
    missing = [k for k, v in env["versions"].items() if v is None]
    title = f"ebm-run bench ({env['size']}) on {env['device']}\n{versions}" + (
        f"; not installed: {', '.join(missing)}" if missing else "")
    t = Table(title=title)
    busy = any("ratio_busy" in r for r in rows)  # task.contention=true: the neighbour's columns too
    for name, justify in (("#", "right"), ("case", "left"), ("size", "left"), ("ours", "left"), ("peer", "left"),
                          ("ours_s", "right"), ("peer_s", "right"), ("ratio", "right"),
                          *((("busy: ours_s", "right"), ("peer_s", "right"), ("ratio", "right")) if busy else ()),
                          ("check", "left")):
        t.add_column(name, justify=justify)
    colour = {PASSED: "green", FAILED: "bold red"}
    for number, r in enumerate(rows, 1):
        ratio = _ratio(r["ratio"])
        check = f"[{colour[r['check']]}]{r['check']}[/]" if r["check"] in colour else r["check"]
        busy_cells = (_seconds(r.get("ours_s_busy")), _seconds(r.get("peer_s_busy")), _ratio(r.get("ratio_busy"))) if busy else ()
        t.add_row(str(number), r["case"], r["size"], r["ours"], r["peer"], _seconds(r["ours_s"]), _seconds(r["peer_s"]),
                  ratio, *busy_cells, check)
    return t


def show(rows: List[Dict[str, Any]], env: Dict[str, Any]) -> None:
    console = get_console()
    console.print(table(rows, env))
    for number, r in enumerate(rows, 1):
        if r.get("note"):
            console.print(f"[{number}] {r['note']}", markup=False, highlight=False)
    console.print(f"ratio = peer_s / ours_s (> 1: ours is faster); {env['seconds']:.0f} s in all", highlight=False)
