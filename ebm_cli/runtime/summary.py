"""The summary of a sweep: one row per job from its metrics.json, sorted by the objective."""

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from ebm_cli.runtime.console import get_console, simple_table
from ebm_cli.runtime.disk import cannot_write, remove_quietly

log = logging.getLogger("ebm_cli")

SHOWN = ("coverage@", "precision@", "chamfer", "psnr_best", "ssim_best", "train_time_s")  # metric columns of the printed table
failed_jobs: List[str] = []  # "job: error" of the last summarised sweep, for the exit code


def metric_key(metrics: Dict[str, float], name: str) -> Optional[str]:
    """The key of metric `name` in metrics: itself; for a name without a tolerance (`coverage`) the
    metric at the data's own tolerance (`coverage@0.05`); or the same metric at the same tolerance
    written otherwise (`coverage@0.0` reads coverage@0)."""
    if name in metrics:
        return name
    base, _, tol = name.partition("@")
    for key in metrics:
        k_base, at, k_tol = key.partition("@")
        if k_base != base or not at:
            continue
        if not tol:
            return key
        try:
            if float(k_tol) == float(tol):
                return key
        except ValueError:
            continue
    return None


def summarise(sweep_dir: Path, objective: str, direction: str) -> List[Dict[str, Any]]:
    """Rows for every job folder with a metrics.json; writes sweep_dir/summary.csv."""
    rows = []
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            record = {"status": "unreadable", "error": f"{path.name}: {exc}"}
        metrics = record.get("metrics", {})
        rows.append({
            "job": path.parent.name, "status": record.get("status", "?"),
            "overrides": " ".join(record.get("overrides", [])), "objective": metrics.get(metric_key(metrics, objective) or objective),
            **metrics, **({"collapsed": record["collapsed"]} if "collapsed" in record else {}),
            "error": record.get("error", ""),
        })
    sign = -1.0 if direction == "maximize" else 1.0

    def key(row):
        value = row["objective"]
        usable = isinstance(value, (int, float)) and math.isfinite(value)
        return (not usable, sign * value if usable else 0.0, row["job"])

    rows.sort(key=key)
    failed_jobs[:] = [f"{r['job']}: {r['error']}" for r in rows if r["status"] != "completed"]
    if rows:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        columns.remove("error")
        columns.append("error")  # the long text last
        tmp = sweep_dir / ".summary.csv.tmp"
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(tmp, sweep_dir / "summary.csv")
        except OSError as exc:  # the jobs' own results stand; the table is still printed
            remove_quietly(tmp)
            log.warning("%s", cannot_write(sweep_dir / "summary.csv", exc))
    return rows


def print_summary(rows: List[Dict[str, Any]], sweep_dir: Path, objective: str) -> None:
    """A rich table: the overrides that differ between jobs, status, objective, key metrics."""
    per_job = [r["overrides"].split() for r in rows]
    common = set.intersection(*(set(o) for o in per_job)) if per_job else set()
    shown_objective = {metric_key(r, objective) for r in rows}
    metric_cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c.startswith(SHOWN) and c not in shown_objective]
    errors = any(r["error"] for r in rows)
    header = ["job", "overrides", "status", objective, *metric_cols] + (["error"] if errors else [])
    body = []
    for r, overrides in zip(rows, per_job):
        varying = " ".join(o for o in overrides if o not in common)
        line = [r["job"].split("_", 1)[0], varying, r["status"], r["objective"], *(r.get(c) for c in metric_cols)]
        body.append(line + ([r["error"][:100]] if errors else []))
    title = f"sweep {sweep_dir}: {len(rows)} jobs, best first" + (f" (all with {' '.join(sorted(common))})" if common else "")
    console = get_console()
    console.print(simple_table(title, header, body))
    console.print(f"summary written to {sweep_dir / 'summary.csv'}")
