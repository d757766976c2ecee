"""The summary of a sweep: one row per job from its metrics.json, sorted by the objective on the
validation split (where the jobs have one), with the test metrics beside it."""

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ebm_cli.runtime.console import get_console, print_results, simple_table
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


def sweep_objective(record: Dict[str, Any], objective: str) -> Tuple[Optional[float], Optional[str]]:
    """What a sweep compares a job by, and the split it was measured on: the objective of the run's
    kept weights on its validation split, where they were scored there (trainer.keep=best); else
    its test metric (trainer.eval_every=0, trainer.keep=last, a run that ended before its first
    evaluation); (None, None) for a job without either (it failed). Hyperparameters picked by the
    test split would make the best job's test score one chosen on that very split."""
    best = record.get("best_validation") or {}
    value = best.get(objective)
    if isinstance(value, (int, float)) and math.isfinite(value) and best.get("step") == record.get("evaluated_step"):
        return float(value), "validation"
    metrics = record.get("metrics", {})
    value = metrics.get(metric_key(metrics, objective) or objective)
    return (value, "test") if value is not None else (None, None)


def read_record(run_dir: Path) -> Dict[str, Any]:
    """A run's metrics.json, or {} where it cannot be read."""
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def summarise(sweep_dir: Path, objective: str, direction: str) -> List[Dict[str, Any]]:
    """Rows for every job folder with a metrics.json; writes sweep_dir/summary.csv."""
    rows = []
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            record = {"status": "unreadable", "error": f"{path.name}: {exc}"}
        metrics = record.get("metrics", {})
        value, split = sweep_objective(record, objective)
        rows.append({
            "job": path.parent.name, "status": record.get("status", "?"),
            "overrides": " ".join(record.get("overrides", [])), "objective": value, "objective_split": split,
            **metrics, **({"collapsed": record["collapsed"]} if "collapsed" in record else {}),
            "error": record.get("error", ""),
        })
    sign = -1.0 if direction == "maximize" else 1.0
    validated = any(r["objective_split"] == "validation" for r in rows)

    def key(row):  # jobs compared on validation first, then those only measured on the test split
        value = row["objective"]
        usable = isinstance(value, (int, float)) and math.isfinite(value)
        return (not usable, validated and row["objective_split"] != "validation", sign * value if usable else 0.0,
                row["job"])

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
    splits = {r.get("objective_split") for r in rows} - {None}
    # the test metric itself is a column of its own unless the objective column is that metric
    shown_objective = {metric_key(r, objective) for r in rows} if splits == {"test"} else set()
    metric_cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c.startswith(SHOWN) and c not in shown_objective]
    errors = any(r["error"] for r in rows)
    label = {"validation": f"validation {objective}", "test": objective}.get(
        next(iter(splits)) if len(splits) == 1 else "", f"{objective} (validation; test where none, after them)")
    header = ["job", "overrides", "status", label, *metric_cols] + (["error"] if errors else [])
    body = []
    for r, overrides in zip(rows, per_job):
        varying = " ".join(o for o in overrides if o not in common)
        line = [r["job"].split("_", 1)[0], varying, r["status"], r["objective"], *(r.get(c) for c in metric_cols)]
        body.append(line + ([r["error"][:100]] if errors else []))
    title = f"sweep {sweep_dir}: {len(rows)} jobs, best first by the {label}" + (f" (all with {' '.join(sorted(common))})" if common else "")
    console = get_console()
    console.print(simple_table(title, header, body))
    tensorboard = sweep_dir if any(Path(sweep_dir).glob("*/tb")) else None  # each job's tb/ a run of its own there
    print_results(sweep_dir, ["summary.csv", "one folder per job"], tensorboard)
