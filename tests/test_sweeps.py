"""A multirun of the installed ebm-run: one folder per job, named by its overrides, and a summary."""

import csv
import json
import subprocess

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import ebm_run_command


@pytest.mark.slow
def test_six_job_sweep_writes_a_sorted_summary(tmp_path, subprocess_env):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(ebm_run_command() + ["-m", "debug=smoke", "seed=0,1,2", "energy.hidden=32,64",
                                               "logger.landscape_every=0", f"hydra.sweep.dir={sweep}"],
                          cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "6 jobs, best first" in proc.stdout and "summary written to" in proc.stdout
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name.split("_", 1)[0] for j in jobs] == [str(i) for i in range(6)]
    assert jobs[0].name == "0_debug=smoke,energy.hidden=32,logger.landscape_every=0,seed=0"
    with open(sweep / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"completed"}
    objective = [float(r["objective"]) for r in rows]
    assert objective == sorted(objective, reverse=True)
    assert all(r["objective"] == r["coverage@0.05"] for r in rows)
    for job in jobs:
        record = json.loads((job / "metrics.json").read_text())
        assert "energy.hidden=32" in record["overrides"] or "energy.hidden=64" in record["overrides"]
        acc = EventAccumulator(str(job / "tb"))
        acc.Reload()
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
